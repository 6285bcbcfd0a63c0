"""The configuration tables (insightface's recognition/config.py).

They live in the installed package, ``src/facekd/config.py``; edit them there.
This module re-exports them for scripts and habits that import ``config``.
"""
from facekd.config import config, dataset, default, generate_config, loss, network  # noqa: F401
