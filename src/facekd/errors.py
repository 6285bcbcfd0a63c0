"""The one error type of the project, and the command-line wrapper that prints it.

Every validation failure raises :class:`FaceKDError` with a message that names the
file or flag at fault and the fix. Scripts run their ``main`` through
:func:`run_cli`, which prints that message on one line and exits non-zero.
"""
import re
import sys


class FaceKDError(Exception):
    """A user-facing error: bad input, missing file, inconsistent configuration."""


_MXNET_NOISE = re.compile(r"^(Traceback \(most recent call last\):|File \"|\[bt\]|Stack trace:|\s*$)")
_MXNET_PREFIX = re.compile(r"^MXNetError:\s*")
_MXNET_WHERE = re.compile(r"(\[\d\d:\d\d:\d\d\]\s*)?\S+\.(cc|h|cu):\d+:\s*")  # "[hh:mm:ss] src/x.cc:12: "


def mxnet_cause(exc):
    """The line of an MXNetError (or any exception) that says what went wrong, on one line.

    MXNet 1.9 puts a C++ traceback before the message ("Traceback (most recent call
    last):", then "File ..." lines); the cause is the line after it, usually starting
    with "MXNetError:" or "Check failed:". Timestamps and source locations are dropped.
    """
    lines = [line.strip() for line in str(exc).splitlines()]
    for line in lines:
        if not _MXNET_NOISE.match(line):
            text = _MXNET_WHERE.sub("", _MXNET_PREFIX.sub("", line)).strip()
            if text:
                return text
    return type(exc).__name__


def run_cli(main, argv=None):
    """Run ``main(argv)``; turn a FaceKDError into one line on stderr and exit status 2."""
    try:
        result = main(argv)
    except FaceKDError as exc:
        prog = sys.argv[0].rsplit("/", 1)[-1] if sys.argv and sys.argv[0] else "facekd"
        message = " ".join(str(exc).split())  # always one line
        print(f"{prog}: error: {message}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(result or 0)
