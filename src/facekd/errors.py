"""The one error type of the project, and the command-line wrapper that prints it.

Every validation failure raises :class:`FaceKDError` with a message that names the
file or flag at fault and the fix. Scripts run their ``main`` through
:func:`run_cli`, which prints that message on one line and exits non-zero.
"""
import sys


class FaceKDError(Exception):
    """A user-facing error: bad input, missing file, inconsistent configuration."""


def run_cli(main, argv=None):
    """Run ``main(argv)``; turn a FaceKDError into one line on stderr and exit status 2."""
    try:
        result = main(argv)
    except FaceKDError as exc:
        prog = sys.argv[0].rsplit("/", 1)[-1] if sys.argv and sys.argv[0] else "facekd"
        print(f"{prog}: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(result or 0)
