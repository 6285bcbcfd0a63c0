"""SIGTERM / SIGINT during training: finish the step, save, stop cleanly (preemptible clusters).

The first signal only sets :attr:`StopRequest.requested`; the trainer checks it after each
step, writes its resume set and returns (exit status 0). A second SIGINT (Ctrl-C twice)
raises KeyboardInterrupt at once.
"""
import logging
import signal
import threading


class StopRequest:
    """While active (``with``), SIGTERM and SIGINT ask the training loop to stop after the current step."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.requested = None  # the name of the signal that asked, once one did
        self._previous = {}

    def _handle(self, signum, frame):
        name = signal.Signals(signum).name
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt  # asked twice: stop now
        self.requested = name
        logging.info("%s: stopping after this step (a second Ctrl-C stops at once)", name)

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():  # handlers live on the main thread
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}
