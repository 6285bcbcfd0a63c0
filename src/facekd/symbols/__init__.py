"""Backbone networks, one registry: ``get_symbol(cfg)`` returns the embedding symbol.

A network is a function ``(cfg) -> symbol`` whose output is the BatchNorm ``fc1``
(``fc1_output``), registered under its name(s) with :func:`register_network`.
The network name of a config is ``cfg.network`` (``y1``, ``r100``, ...).
"""
from ..registry import Registry

NETWORKS = Registry("network", "--network")


def register_network(*names):
    """Decorator: register a symbol builder ``fn(cfg) -> fc1 symbol`` under each name."""
    def wrap(fn):
        for name in names:
            NETWORKS.register(name, fn)
        return fn
    return wrap


def get_symbol(cfg):
    """The embedding symbol (output ``fc1_output``) of ``cfg.network``."""
    return NETWORKS.get(cfg.network)(cfg)


# Importing the modules fills the registry.
from . import mobilefacenet, resnet, pocketnet  # noqa: E402,F401
from .common import network_initializer  # noqa: E402,F401
