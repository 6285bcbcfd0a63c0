"""The table file of a run: ``--config FILE``, else ``config.py`` beside train.py, else the defaults.

A table file is a Python file, like ``recognition/config.py``, that defines the tables
``default``, ``network``, ``dataset`` and ``loss`` (and, optionally, the base table
``config``), usually by editing copies of the package's tables
(:func:`facekd.config.copy_tables`). :func:`read_tables` runs it afresh for every run
(``runpy.run_path``) and hands back deep copies of what it defined, so that a file,
or a run, never changes the package's own tables, however many runs one process makes.
Keys the file leaves out of ``config`` and ``default`` keep the package's values.
"""
import copy
import os
import runpy
import traceback
from collections.abc import Mapping
from dataclasses import dataclass

from easydict import EasyDict as edict

from . import config as package
from .errors import FaceKDError

REQUIRED = ("default", "network", "dataset", "loss")  # what a table file must define
OPTIONAL = ("config",)  # the base table: the package's when a file leaves it out
NAMED = ("network", "dataset", "loss")  # tables of named entries (network.y1, dataset.emore, ...)
_HINT = "start from a copy of recognition/config.py"


@dataclass(frozen=True)
class Tables:
    """The five tables of a run and the file they came from (what the log names)."""
    config: edict
    network: edict
    dataset: edict
    loss: edict
    default: edict
    source: str


def package_tables():
    """Copies of the package's default tables."""
    base, network, dataset, loss, default = package.copy_tables()
    return Tables(base, network, dataset, loss, default, os.path.abspath(package.__file__))


def _snapshot():
    return {name: (getattr(package, name), copy.deepcopy(getattr(package, name))) for name in REQUIRED + OPTIONAL}


def _restore(snapshot):
    """Put back the package's tables if a file edited them in place (``from facekd.config
    import default; default.lr = ...``): its edits still reach the run, through the copies."""
    for name, (table, saved) in snapshot.items():
        setattr(package, name, table)
        if table == saved:
            continue
        for key in [k for k in table if k not in saved]:
            table.pop(key)
        for key, value in saved.items():
            table[key] = copy.deepcopy(value)


def _line_in(path, exc):
    """The line of ``path`` where ``exc`` was raised (the innermost frame in that file), or None."""
    target = os.path.realpath(path)
    lines = [frame.lineno for frame in traceback.extract_tb(exc.__traceback__)
             if os.path.realpath(frame.filename) == target]
    return lines[-1] if lines else None


def _name(flag, path):
    """How errors name the file: ``--config /x/my.py``, or the path alone for config.py beside train.py."""
    return f"{flag} {path}" if flag else path


def _check_file(path, flag):
    name = _name(flag, path)
    if not os.path.exists(path):
        raise FaceKDError(f"{name}: file not found; give a table file ({_HINT} and edit it)")
    if os.path.isdir(path):
        raise FaceKDError(f"{name} is a folder; give the table file, e.g. {os.path.join(path, 'config.py')}")
    if not path.endswith(".py"):
        raise FaceKDError(f"{name}: not a Python file; the tables are read from a .py file that defines "
                          f"{', '.join(REQUIRED)} ({_HINT})")
    with open(path, "rb") as f:
        raw = f.read()
    try:
        if b"\0" in raw:
            raise UnicodeDecodeError("utf-8", raw, raw.index(b"\0"), raw.index(b"\0") + 1, "NUL byte")
        source = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise FaceKDError(f"{name}: not a Python file (binary or not UTF-8 text); give a .py file that "
                          f"defines {', '.join(REQUIRED)} ({_HINT})") from None
    try:
        compile(source, path, "exec")
    except SyntaxError as exc:
        raise FaceKDError(f"{name}, line {exc.lineno}: syntax error ({exc.msg}); fix that line") from None


def _table(path, name, value, flag):
    if not isinstance(value, Mapping):
        raise FaceKDError(f"{_name(flag, path)}: {name} is a {type(value).__name__}, expected a table (an "
                          f"EasyDict); {_HINT}")
    if name in NAMED:
        for key, entry in value.items():
            if not isinstance(entry, Mapping):
                raise FaceKDError(f"{_name(flag, path)}: {name}.{key} is a {type(entry).__name__}, expected a table "
                                  f"of keys, e.g. {name}.{key} = edict(...); {_HINT}")
    return edict(copy.deepcopy(dict(value)))


def read_tables(path, flag="--config"):
    """:class:`Tables` of the table file ``path`` (``flag`` names where it came from in errors)."""
    path = os.path.abspath(path)
    _check_file(path, flag)
    snapshot = _snapshot()
    try:
        try:
            namespace = runpy.run_path(path, run_name="facekd_tables")
        except (Exception, SystemExit) as exc:
            line = _line_in(path, exc)
            where = f"{_name(flag, path)}, line {line}" if line else _name(flag, path)
            message = " ".join(str(exc).split()) or "no message"
            raise FaceKDError(f"{where}: {type(exc).__name__}: {message}; fix the file ({_HINT})") from None
        missing = [name for name in REQUIRED if name not in namespace]
        if missing:
            raise FaceKDError(f"{_name(flag, path)} does not define {', '.join(missing)}; a table file defines "
                              f"{', '.join(REQUIRED)} ({_HINT}, which builds them on the package's defaults)")
        tables = {name: _table(path, name, namespace[name], flag)  # copies, taken before the restore
                  for name in REQUIRED + OPTIONAL if name in namespace}
    finally:
        _restore(snapshot)
    defaults = package_tables()
    for name in OPTIONAL:
        tables.setdefault(name, getattr(defaults, name))
    for name in ("config", "default"):  # keys a file leaves out keep the package's values
        for key, value in getattr(defaults, name).items():
            tables[name].setdefault(key, value)
    return Tables(source=path, **tables)


def find_tables(config_flag=None, script_config=None):
    """The run's tables: ``--config FILE`` when given, else ``script_config`` (the config.py
    beside the running train.py) when that file exists, else the package's defaults."""
    if config_flag:
        return read_tables(config_flag, "--config")
    if script_config and os.path.isfile(script_config):
        return read_tables(script_config, flag="")
    return package_tables()
