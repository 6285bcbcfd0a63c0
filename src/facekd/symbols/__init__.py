"""Backbone networks, one registry: ``get_symbol(cfg)`` returns the embedding symbol.

A network is a function ``(cfg) -> symbol`` whose output is the BatchNorm ``fc1``
(``fc1_output``), registered under its name(s) with :func:`register_network`, together
with what is special about it (:class:`NetworkSpec`): how its FLOPs are counted, how its
weights are initialised and the input size it is built for. The network name of a
config is ``cfg.network`` (``y1``, ``r100``, ...).
"""
from dataclasses import dataclass
from typing import Callable, Tuple

from ..registry import Registry

NETWORKS = Registry("network", "--network")


@dataclass(frozen=True)
class NetworkSpec:
    name: str
    build: Callable
    flops_mode: str = "conv_fc"  # how its published FLOPs are counted (symbols.flops)
    initializer: str = "insightface"  # a key of symbols.common.INITIALIZERS
    input_size: Tuple[int, int] = (112, 112)  # height, width of the aligned faces


def register_network(*names, flops_mode="conv_fc", initializer="insightface", input_size=(112, 112)):
    """Decorator: register a symbol builder ``fn(cfg) -> fc1 symbol`` under each name."""
    def wrap(fn):
        for name in names:
            NETWORKS.register(name, NetworkSpec(name, fn, flops_mode, initializer, tuple(input_size)))
        return fn
    return wrap


def get_network(name):
    """The :class:`NetworkSpec` registered as ``name``."""
    return NETWORKS.get(name)


def get_symbol(cfg):
    """The embedding symbol (output ``fc1_output``) of ``cfg.network``."""
    return get_network(cfg.network).build(cfg)


def network_initializer(cfg=None):
    """The weight initialiser of ``cfg.network`` (insightface's when no config is given)."""
    from .common import make_initializer

    return make_initializer(get_network(cfg.network).initializer if cfg is not None else "insightface")


# Importing the modules fills the registry.
from . import mobilefacenet, resnet, pocketnet  # noqa: E402,F401
