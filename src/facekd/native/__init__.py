"""Native (C++) operators of the class-centre heads, compiled on first use and loaded into MXNet.

``facekd_unit_rows`` (``unit_rows.cc``) normalises the rows of the trainable class centres,
forward and backward in one pass each, where the stock graph passes over the (C x d)
matrix about ten times a step (docs/performance.md). It is an MXNet 1.9 extension library
(``mx.library.load``) built from the source shipped in this package with the machine's C++
compiler (``$CXX``, else ``c++``, ``g++`` or ``clang++`` on the PATH) against the headers in
the mxnet wheel, into the user's cache (``facekd.cache``): one build per source and MXNet
version, reused by every later run.

It has a CPU kernel only. :func:`unit_rows_available` says whether a run on given contexts
uses it; where it cannot (a GPU context, no compiler, a build that fails, or
``FACEKD_NATIVE=0``) the heads keep the stock-operator graph, which computes the same
values, and the reason is logged once.
"""
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile

from .. import cache

UNIT_ROWS = "facekd_unit_rows"
SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "unit_rows.cc")
LIBRARY = "libfacekd_native.so"
SWITCH = "FACEKD_NATIVE"  # "0": never use the native operators
COMPILERS = ("c++", "g++", "clang++")
FLAGS = ("-shared", "-fPIC", "-O3", "-fopenmp", "-std=c++11")
BUILD_SECONDS = 300

_state = {}  # per process: "loaded" -> True, or "reason" -> why not


def compiler():
    """The C++ compiler command: $CXX, else the first of :data:`COMPILERS` on the PATH (None: none)."""
    if os.environ.get("CXX"):
        return os.environ["CXX"]
    for name in COMPILERS:
        if shutil.which(name):
            return name
    return None


def _mxnet_dir():
    import mxnet as mx

    return os.path.dirname(os.path.abspath(mx.__file__))


def library_path():
    """Where the built library lives: the cache, keyed by the source and the MXNet version."""
    import mxnet as mx

    with open(SOURCE, "rb") as f:
        digest = hashlib.sha256(f.read() + mx.__version__.encode()).hexdigest()[:16]
    return os.path.join(cache.default_root(), "native", f"mxnet-{mx.__version__}-{digest}", LIBRARY)


def build(path):
    """Compile :data:`SOURCE` into ``path`` (written under a temporary name, then renamed).

    Returns None, or the reason the build could not be done (one line)."""
    command = compiler()
    if command is None:
        return "no C++ compiler found (set CXX, or install g++)"
    mxnet_dir = _mxnet_dir()
    api = os.path.join(mxnet_dir, "src", "lib_api.cc")
    include = os.path.join(mxnet_dir, "include")
    if not os.path.isfile(api) or not os.path.isdir(include):
        return f"this mxnet install has no extension headers ({api})"
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=os.path.dirname(path))
    os.close(fd)
    try:
        result = subprocess.run([*command.split(), *FLAGS, f"-I{include}", SOURCE, api, "-o", tmp],
                                capture_output=True, text=True, timeout=BUILD_SECONDS)
        if result.returncode != 0:
            lines = result.stderr.strip().splitlines() or ["(no output)"]
            first = next((line for line in lines if "error" in line.lower()), lines[-1])
            return f"{command} failed on {os.path.basename(SOURCE)}: {first.strip()}"
        os.replace(tmp, path)
        return None
    except (OSError, subprocess.SubprocessError) as exc:
        return f"{command} could not run: {exc}"
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def load():
    """Build (once per machine) and load the library into this process; True when its operators
    are registered. The reason it is not is logged once and kept (:func:`reason`)."""
    if "loaded" in _state or "reason" in _state:
        return "loaded" in _state
    if os.environ.get(SWITCH, "1") == "0":
        return _unavailable(f"{SWITCH}=0")
    import mxnet as mx

    path = library_path()
    if not os.path.isfile(path):
        logging.info("native operators: building %s with %s (once per machine)", path, compiler())
        failure = build(path)
        if failure:
            return _unavailable(failure)
    try:
        mx.library.load(path, False)
    except Exception as exc:  # an MXNetError or OSError from dlopen: report, keep the stock graph
        return _unavailable(f"{path} does not load: {str(exc).strip().splitlines()[0]}")
    _state["loaded"] = True
    logging.info("native operators: %s from %s (class centres normalised in one pass; FACEKD_NATIVE=0: "
                 "stock operators)", UNIT_ROWS, path)
    return True


def _unavailable(reason):
    _state["reason"] = reason
    logging.info("native operators not used (%s): the class-centre heads run on stock MXNet operators", reason)
    return False


def reason():
    """Why the native operators are not loaded ('' when they are, or before :func:`load`)."""
    return _state.get("reason", "")


def unit_rows(weight):
    """The symbol ``facekd_unit_rows(weight)``: the rows of ``weight`` over their L2 norms."""
    import mxnet as mx

    if "loaded" not in _state:
        raise RuntimeError(f"{UNIT_ROWS} is not registered in this process: a head built with the native "
                           "operators needs facekd.native.load() to have succeeded first")
    return getattr(mx.sym, UNIT_ROWS)(weight)


def unit_rows_available(contexts):
    """Whether heads bound on ``contexts`` normalise their centres with :data:`UNIT_ROWS`:
    every context a CPU, and the library loaded."""
    return all(ctx.device_type == "cpu" for ctx in contexts) and load()
