"""``<run folder>/train.log``: every log line of a run, each starting with its ISO date and time.

stderr keeps the bare lines users grep (``Epoch[0] Batch [0-20]\\tSpeed: ...``); the file
gets the same lines as ``2026-12-02T01:23:45 Epoch[0] Batch [0-20]\\tSpeed: ...``, which
``recognition/eval/plot_training.py`` reads as well. Lines logged before the run folder
is known (the command, the table file, the devices) are held in memory and written when
:meth:`RunLog.open` names the folder, so a run that is refused before it starts (another
run's checkpoints in the folder, a bad flag) leaves any earlier ``train.log`` untouched.
``--resume`` appends to the file; a new run starts it afresh. The handler is removed when
the run ends, however it ends, so several runs in one process each log to their own file.
"""
import logging
import os

from ..errors import FaceKDError

NAME = "train.log"
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S"


class TimestampFormatter(logging.Formatter):
    """``<ISO date and time> <message>``, the stamp repeated on every line of a multi-line message."""

    def __init__(self):
        super().__init__("%(message)s")

    def format(self, record):
        stamp = self.formatTime(record, TIME_FORMAT)
        return "\n".join(f"{stamp} {line}" for line in super().format(record).split("\n"))


class _FileOnceOpened(logging.Handler):
    """Keeps records in memory until :meth:`open`, then writes them and every later one to the file."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.setFormatter(TimestampFormatter())
        self.pending = []
        self.stream = None
        self.discarding = False

    def emit(self, record):
        if self.discarding:
            return
        if self.stream is None:
            self.pending.append(record)
            return
        try:
            self.stream.write(self.format(record) + "\n")
            self.stream.flush()
        except Exception:
            self.handleError(record)

    def open(self, path, append):
        self.stream = open(path, "a" if append else "w", encoding="utf-8")
        pending, self.pending = self.pending, []
        for record in pending:
            self.emit(record)

    def discard(self):
        self.discarding, self.pending = True, []

    def close(self):
        if self.stream is not None:
            self.stream.close()
            self.stream = None
        self.pending = []
        super().close()


class RunLog:
    """``with RunLog() as run_log: ... run_log.open(prefix, append=args.resume) ...``

    From ``__enter__`` every INFO record of the root logger is kept; :meth:`open` writes
    them, and all that follow, into ``train.log`` beside the checkpoints of ``prefix``.
    An error that ends the run after :meth:`open` is written as the file's last line
    (stderr gets it from the command-line wrapper, as before).
    """

    def __init__(self):
        self.handler = _FileOnceOpened()
        self.path = None

    def __enter__(self):
        logging.getLogger().addHandler(self.handler)
        return self

    def open(self, prefix, append=False, write=True):
        """Start ``<folder of prefix>/train.log`` (appended to with ``append``); with ``write``
        False (a worker other than the first of a parameter-server job) nothing is written."""
        if not write:
            self.handler.discard()
            return None
        folder = os.path.dirname(os.path.abspath(prefix))
        path = os.path.join(folder, NAME)
        try:
            os.makedirs(folder, exist_ok=True)
            self.handler.open(path, append)
        except OSError as exc:
            raise FaceKDError(f"cannot write the training log {path} ({exc.strerror or exc}); "
                              "choose a writable --models-root") from None
        self.path = path
        return path

    def __exit__(self, kind, exc, tb):
        try:
            if exc is not None and not isinstance(exc, SystemExit) and self.handler.stream is not None:
                self.handler.stream.write(self.handler.format(_error_record(exc)) + "\n")
        finally:
            logging.getLogger().removeHandler(self.handler)
            self.handler.close()
        return False


def _error_record(exc):
    if isinstance(exc, FaceKDError):
        text = "error: " + " ".join(str(exc).split())
    elif isinstance(exc, KeyboardInterrupt):
        text = "interrupted"
    else:
        text = f"error: {type(exc).__name__}: {' '.join(str(exc).split())}"
    return logging.LogRecord("facekd", logging.ERROR, __file__, 0, text, None, None)
