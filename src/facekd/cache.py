"""The per-user cache folder of facekd: $FACEKD_CACHE, else $XDG_CACHE_HOME/facekd, else ~/.cache/facekd.

It lives outside the clone, so a fresh clone on the same machine finds what an earlier one
left there (the benchmarks' trained teachers, the compiled native operators).
"""
import os


def default_root():
    """The cache folder: $FACEKD_CACHE, else $XDG_CACHE_HOME/facekd, else ~/.cache/facekd."""
    if os.environ.get("FACEKD_CACHE"):
        return os.path.abspath(os.environ["FACEKD_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(os.path.abspath(base), "facekd")
