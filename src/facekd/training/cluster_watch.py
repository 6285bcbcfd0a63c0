"""Lost machines under ``--kvstore dist_sync``: every process of the job exits, none hangs.

MXNet's parameter server (ps-lite) blocks a worker in its push/pull until every other
worker has pushed, and keeps the server and the scheduler waiting for ever: kill one
worker and the rest of the job hangs. ps-lite's heartbeats (``PS_HEARTBEAT_INTERVAL``,
``PS_HEARTBEAT_TIMEOUT``) only mark a node dead for its recovery mode; nothing stops.

This module adds a watch beside ps-lite, independent of its internals. The scheduler's
process runs a *hub* on ``DMLC_PS_ROOT_URI`` at port ``FACEKD_WATCH_PORT`` (default
``DMLC_PS_ROOT_PORT + 1``); every worker and server process holds one TCP connection to
it, and both ends send a heartbeat byte every ``FACEKD_WATCH_INTERVAL`` seconds. When a
connection closes before its process said it finished (kill -9, a crash, an exception),
or stays silent for ``FACEKD_WATCH_TIMEOUT`` seconds (a machine lost from the network),
the hub tells every other process which one was lost and exits; each of them logs one
line and exits with :data:`EXIT_LOST` (non-zero). A process that loses the hub does the
same. The checkpoints written so far are complete sets (see ``training/checkpoint.py``),
so the job resumes with ``--resume`` once every machine is back.

Wire format (lines of ASCII): a node sends ``hello <role> <pid> <host>``, then ``.``
heartbeats, then ``done`` when its role is over; the hub sends ``.`` heartbeats,
``lost <what>`` on a failure and ``done`` when the scheduler finished.
"""
import importlib
import os
import select
import socket
import sys
import threading
import time

EXIT_LOST = 3  # the exit status of a process whose job lost a machine
ROLES = ("scheduler", "server", "worker")
DEFAULTS = dict(FACEKD_WATCH_INTERVAL=2.0, FACEKD_WATCH_TIMEOUT=30.0, FACEKD_WATCH_START_TIMEOUT=600.0)


class Job:
    """The parameter-server job this process belongs to, read once from the DMLC variables."""

    def __init__(self, role, host, port, workers, servers, interval, timeout, start_timeout):
        self.role, self.host, self.port = role, host, port
        self.workers, self.servers = workers, servers
        self.interval, self.timeout, self.start_timeout = interval, timeout, start_timeout

    @classmethod
    def from_env(cls, environ=None):
        """The job, or None when this process is not part of one (no ``DMLC_ROLE``)."""
        from ..errors import FaceKDError

        env = os.environ if environ is None else environ
        role = env.get("DMLC_ROLE")
        if not role:
            return None
        if role not in ROLES:
            raise FaceKDError(f"DMLC_ROLE={role!r}: valid: {', '.join(ROLES)}")

        def number(name, kind, default=None):
            value = env.get(name, default)
            try:
                out = kind(value)
                if out < 0 or (kind is float and out == 0):
                    raise ValueError
                return out
            except (TypeError, ValueError):
                raise FaceKDError(f"{name}={value!r}: expected a positive number (set it in the environment "
                                  "of every process of the job, as MXNet's launcher does)") from None

        root_port = number("DMLC_PS_ROOT_PORT", int)
        return cls(role, env.get("DMLC_PS_ROOT_URI", "127.0.0.1"),
                   number("FACEKD_WATCH_PORT", int, root_port + 1),
                   number("DMLC_NUM_WORKER", int), number("DMLC_NUM_SERVER", int),
                   *(number(k, float, v) for k, v in DEFAULTS.items()))

    @property
    def nodes(self):
        """Processes that connect to the hub: every worker and server."""
        return self.workers + self.servers


def _lost(message):
    """Log why and leave at once: the main thread is blocked inside MXNet and cannot be woken."""
    sys.stderr.write(message + "\n")
    sys.stderr.flush()
    os._exit(EXIT_LOST)


class _Peer:
    def __init__(self, sock, address):
        self.sock, self.address = sock, address
        self.name, self.buffer, self.done = f"a process at {address[0]}", b"", False
        self.seen = time.monotonic()


class Hub(threading.Thread):
    """The scheduler's side: accepts every worker and server, notices the first one lost."""

    def __init__(self, job):
        super().__init__(name="facekd-watch-hub", daemon=True)
        self.job = job
        try:
            self.listener = socket.create_server(("", job.port))
        except OSError as exc:
            from ..errors import FaceKDError

            raise FaceKDError(f"FACEKD_WATCH_PORT {job.port} cannot be opened on the scheduler's machine ({exc}); "
                              "set FACEKD_WATCH_PORT to a free port, the same on every process of the job") from None
        self.listener.setblocking(False)
        self.peers, self.finished, self.closing = [], 0, False
        self.started = time.monotonic()

    def run(self):
        next_beat = 0.0
        while True:
            readable, _, _ = select.select([self.listener] + [p.sock for p in self.peers], [], [],
                                           self.job.interval / 2)
            now = time.monotonic()
            for sock in readable:
                if sock is self.listener:
                    conn, address = self.listener.accept()
                    self.peers.append(_Peer(conn, address))
                else:
                    self._receive(next(p for p in self.peers if p.sock is sock), now)
            if now >= next_beat:
                self._broadcast(b".\n")
                next_beat = now + self.job.interval
            self._check(now)

    def _receive(self, peer, now):
        try:
            data = peer.sock.recv(4096)
        except OSError:
            data = b""
        if not data:
            self.peers.remove(peer)
            peer.sock.close()
            self.finished += peer.done
            if not peer.done:
                self._fail(f"lost {peer.name}: its connection closed before it finished")
            return
        peer.seen = now
        peer.buffer += data
        *lines, peer.buffer = peer.buffer.split(b"\n")
        for line in lines:
            words = line.decode("ascii", "replace").split()
            if words[:1] == ["hello"] and len(words) == 4:
                peer.name = f"the {words[1]} (pid {words[2]} on {words[3]})"
            elif words == ["done"]:
                peer.done = True

    def _check(self, now):
        for peer in self.peers:
            if not peer.done and now - peer.seen > self.job.timeout:
                self.peers.remove(peer)  # silent: not told, not waited for
                self._fail(f"lost {peer.name}: no heartbeat for {now - peer.seen:.0f} s "
                           f"(FACEKD_WATCH_TIMEOUT={self.job.timeout:g})")
        if len(self.peers) + self.finished < self.job.nodes and now - self.started > self.job.start_timeout:
            self._fail(f"only {len(self.peers)} of the job's {self.job.nodes} workers and servers connected "
                       f"within {self.job.start_timeout:g} s (FACEKD_WATCH_START_TIMEOUT)")

    def _broadcast(self, message):
        for peer in list(self.peers):
            try:
                peer.sock.sendall(message)
            except OSError:
                pass  # its loss shows as a closed connection

    def _fail(self, reason):
        self._broadcast(f"lost {reason}\n".encode("ascii", "replace"))
        self._linger()
        _lost(f"kvstore job: {reason}; the scheduler exits, and so does every other process of the job. "
              "Resume with --resume once every machine is back")

    def _linger(self, seconds=3.0):
        """Let the others read the news before this process goes: a socket closed with unread
        heartbeats in it is reset, and a reset can discard what the other side had not read yet.
        Reads and drops what arrives until every other process closed its end, or ``seconds``."""
        deadline = time.monotonic() + seconds
        while self.peers and time.monotonic() < deadline:
            readable, _, _ = select.select([p.sock for p in self.peers], [], [], 0.1)
            for sock in readable:
                try:
                    data = sock.recv(4096)
                except OSError:
                    data = b""
                if not data:
                    self.peers = [p for p in self.peers if p.sock is not sock]
                    sock.close()

    def finish(self):
        """The scheduler's role is over: the processes still connected stop watching."""
        self._broadcast(b"done\n")


class Link(threading.Thread):
    """A worker's or server's side: heartbeats to the hub; exits when the hub reports a loss or goes."""

    def __init__(self, job):
        super().__init__(name="facekd-watch-link", daemon=True)
        self.job = job
        self.sock = self._connect()
        self.sock.sendall(f"hello {job.role} {os.getpid()} {socket.gethostname()}\n".encode())
        self.finished = threading.Event()
        self.lock = threading.Lock()

    def _connect(self):
        deadline = time.monotonic() + self.job.start_timeout
        while True:
            try:
                return socket.create_connection((self.job.host, self.job.port), timeout=self.job.interval)
            except OSError as exc:
                if time.monotonic() > deadline:
                    _lost(f"kvstore job: no watch hub at {self.job.host}:{self.job.port} after "
                          f"{self.job.start_timeout:g} s ({exc}); start the scheduler with the same command "
                          "(recognition/train.py) so that it runs the hub, or set FACEKD_WATCH_PORT alike "
                          "on every process")
                time.sleep(0.2)

    def run(self):
        buffer, seen, next_beat = b"", time.monotonic(), 0.0
        while not self.finished.is_set():
            readable, _, _ = select.select([self.sock], [], [], self.job.interval / 2)
            now = time.monotonic()
            if readable:
                try:
                    data = self.sock.recv(4096)
                except OSError:
                    data = b""
                if not data:
                    if not self.finished.is_set():
                        _lost("kvstore job: lost the scheduler (its watch connection closed); exiting")
                    return
                seen, buffer = now, buffer + data
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    text = line.decode("ascii", "replace")
                    if text == "done":
                        return
                    if text.startswith("lost "):
                        _lost(f"kvstore job: {text[5:]}; this {self.job.role} (pid {os.getpid()}) exits. "
                              "Resume with --resume once every machine is back")
            if now - seen > self.job.timeout:
                _lost(f"kvstore job: no heartbeat from the scheduler for {now - seen:.0f} s "
                      f"(FACEKD_WATCH_TIMEOUT={self.job.timeout:g}); exiting")
            if now >= next_beat:
                self._send(b".\n")
                next_beat = now + self.job.interval

    def _send(self, message):
        with self.lock:
            try:
                self.sock.sendall(message)
            except OSError:
                pass  # shows as a closed connection on the next read

    def finish(self):
        """This process's role is over: a later closed connection is not a loss."""
        self._send(b"done\n")
        self.finished.set()


def start(job):
    """The hub in the scheduler's process, a link in any other; returns the started thread."""
    watch = Hub(job) if job.role == "scheduler" else Link(job)
    watch.start()
    return watch


def run_role(job):
    """Serve as scheduler or server (``import mxnet`` runs the role until the workers finish), watched."""
    watch = start(job)
    importlib.import_module("mxnet")  # the role runs inside the import

    watch.finish()


def watched(main, argv=None):
    """``main(argv)``, unless this process is the scheduler or a server of a parameter-server job.

    MXNet's launcher starts every role with the training command; the scheduler and the
    servers only serve their role, watched. Workers are watched from the moment the
    trainer joins the job (:func:`watch_worker`).
    """
    job = Job.from_env()
    if job is not None and job.role != "worker":
        return run_role(job)
    return main(argv)


def watch_worker(kvstore):
    """The started link of a worker that joined a parameter-server job through ``kvstore``, else None.

    Call its ``finish()`` when training is over.
    """
    if "dist" not in kvstore.type:
        return None
    return start(Job.from_env())
