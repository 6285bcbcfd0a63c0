"""Background stages joined by bounded queues: one stop flag, the first error kept for the caller.

Used by the training iterators (a batch-producing thread ahead of the training loop) and
by the streaming soft-dataset builder (reader, teacher, writer). A stage blocked on a full
or empty queue wakes every :data:`POLL` seconds to see whether the pipeline was stopped,
so stopping never hangs.
"""
import queue
import threading

END = object()  # a stage's last item; also what get() returns once the pipeline is stopped
POLL = 0.1  # seconds between checks of the stop flag while a queue is full or empty


class Pipeline:
    """Stop flag, first error and queue helpers shared by the stages of one job."""

    def __init__(self):
        self.stop = threading.Event()
        self.error = None
        self._lock = threading.Lock()

    def fail(self, exc):
        """Record ``exc`` (the first one wins) and stop every stage."""
        with self._lock:
            if self.error is None:
                self.error = exc
        self.stop.set()

    def put(self, q, item):
        """Put ``item`` on ``q``; False when the pipeline stopped first."""
        while not self.stop.is_set():
            try:
                q.put(item, timeout=POLL)
                return True
            except queue.Full:
                pass
        return False

    def get(self, q):
        """The next item of ``q``, or :data:`END` once the pipeline is stopped and ``q`` is empty."""
        while True:
            try:
                return q.get(timeout=POLL)
            except queue.Empty:
                if self.stop.is_set():
                    return END

    def thread(self, fn, *args, name):
        """Start ``fn(*args)`` as a daemon thread whose exception stops the pipeline (see :meth:`fail`)."""
        def run():
            try:
                fn(*args)
            except BaseException as exc:  # handed to the caller through self.error
                self.fail(exc)

        t = threading.Thread(target=run, name=name, daemon=True)
        t.start()
        return t

    def join(self, threads):
        for t in threads:
            while t.is_alive():
                t.join(POLL)
