"""Start every process of a parameter-server job: scheduler, servers, workers.

The conventions of MXNet's own ``tools/launch.py``: ``-n`` workers, ``-s`` servers
(default: as many as workers), ``-H`` a host file (one host per line, ``#`` comments),
``--launcher local`` (every process on this machine, as the tests run it) or ``ssh``
(the scheduler here, the servers and workers over ssh on the hosts, in turn). Each
process gets the ``DMLC_*`` variables and runs the same command, the training command;
``recognition/train.py`` then serves as scheduler or server or trains
(``training/cluster_watch.py`` stops the whole job when one of them is lost).
"""
import os
import shlex
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field

from ..errors import FaceKDError
from ..registry import Registry

# variables this machine passes on to every process, when set here
FORWARDED = ("FACEKD_WATCH_PORT", "FACEKD_WATCH_INTERVAL", "FACEKD_WATCH_TIMEOUT", "FACEKD_WATCH_START_TIMEOUT",
             "PS_VERBOSE", "OMP_NUM_THREADS", "MXNET_OMP_MAX_THREADS", "CUDA_VISIBLE_DEVICES")


@dataclass(frozen=True)
class Node:
    """One process of the job: its role, the host it runs on (None: this machine) and its variables."""
    role: str
    host: object
    env: dict = field(default_factory=dict)


def read_hosts(path):
    """Host names of a host file: one per line, blank lines and ``#`` comments skipped."""
    try:
        with open(path) as f:
            hosts = [line.split("#", 1)[0].strip() for line in f]
    except OSError as exc:
        raise FaceKDError(f"-H {path}: cannot read the host file ({exc.strerror}); give a file with one "
                          "host name or address per line") from None
    hosts = [h for h in hosts if h]
    if not hosts:
        raise FaceKDError(f"-H {path}: the host file lists no host; write one host name or address per line")
    for host in hosts:
        if len(host.split()) != 1:
            raise FaceKDError(f"-H {path}: {host!r} is not one host name; write one host per line")
    return hosts


def plan(workers, servers, root_uri, root_port, hosts=None, environ=None):
    """The scheduler (on this machine), ``servers`` servers and ``workers`` workers, spread over
    ``hosts`` in turn (servers first, as MXNet's launcher does), each with its variables."""
    if workers < 1 or servers < 1:
        raise FaceKDError(f"-n {workers} -s {servers}: a job needs at least one worker and one server")
    environ = os.environ if environ is None else environ
    common = {k: environ[k] for k in FORWARDED if k in environ}
    common.update(DMLC_PS_ROOT_URI=root_uri, DMLC_PS_ROOT_PORT=str(root_port),
                  DMLC_NUM_WORKER=str(workers), DMLC_NUM_SERVER=str(servers))
    nodes = [Node("scheduler", None, dict(common, DMLC_ROLE="scheduler"))]
    roles = ["server"] * servers + ["worker"] * workers
    for i, role in enumerate(roles):
        host = hosts[i % len(hosts)] if hosts else None
        env = dict(common, DMLC_ROLE=role)
        if host is not None and _is_address(host):
            env["DMLC_NODE_HOST"] = host  # the address ps-lite binds and announces (it takes no names)
        nodes.append(Node(role, host, env))
    return nodes


def _is_address(host):
    try:
        socket.inet_aton(host)
        return True
    except OSError:
        return False


def local_process(node, command, cwd):
    return subprocess.Popen(command, env=dict(os.environ, **node.env), cwd=cwd)


def ssh_command(node, command, cwd):
    """``ssh host 'cd cwd && K=V ... command'`` for a node on another machine."""
    assignments = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(node.env.items()))
    remote = f"cd {shlex.quote(cwd)} && env {assignments} {shlex.join(command)}"
    return ["ssh", "-o", "StrictHostKeyChecking=no", "-o", "BatchMode=yes", node.host, remote]


def ssh_process(node, command, cwd):
    if node.host is None:  # the scheduler stays here
        return local_process(node, command, cwd)
    return subprocess.Popen(ssh_command(node, command, cwd), stdin=subprocess.DEVNULL)


LAUNCHERS = Registry("launcher", "--launcher")
LAUNCHERS.register("local", local_process)
LAUNCHERS.register("ssh", ssh_process)


def this_host_address():
    """An address of this machine that the other hosts can reach (for the scheduler)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.connect(("10.255.255.255", 1))  # no packet is sent; picks the outgoing interface
            return sock.getsockname()[0]
    except OSError:
        return socket.gethostbyname(socket.gethostname())


def free_port():
    with socket.socket() as sock:
        sock.bind(("", 0))
        return sock.getsockname()[1]


def run(nodes, command, launcher="local", cwd=None, grace=30.0, fail_grace=5.0, log=print):
    """Start every node, wait for the workers; returns the job's exit status.

    The first process that fails decides the status; the others get ``fail_grace``
    seconds to stop on their own (the watch stops those that joined the job) and are
    then killed. When every worker finished, the scheduler and servers get ``grace``
    seconds to finish too.
    """
    start = LAUNCHERS.get(launcher)
    cwd = os.getcwd() if cwd is None else cwd
    procs = [(node, start(node, command, cwd)) for node in nodes]
    log(f"launch: {len(nodes)} processes ({', '.join(n.role for n in nodes)}) with {launcher}; "
        f"scheduler at {nodes[0].env['DMLC_PS_ROOT_URI']}:{nodes[0].env['DMLC_PS_ROOT_PORT']}")
    status = None
    try:
        while status is None:
            codes = [(node, proc.poll()) for node, proc in procs]
            failed = [(node, code) for node, code in codes if code not in (None, 0)]
            if failed:
                node, status = failed[0]
                log(f"launch: the {node.role} on {node.host or 'this machine'} exited with status {status}; "
                    "stopping the job")
            elif all(code == 0 for node, code in codes if node.role == "worker"):
                status = 0
            else:
                time.sleep(0.2)
        deadline = time.time() + (grace if status == 0 else fail_grace)
        while time.time() < deadline and any(proc.poll() is None for _, proc in procs):
            time.sleep(0.2)
    finally:
        for _, proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    if status == 0:
        late = [node.role for node, proc in procs if proc.returncode not in (0,)]
        if late:
            log(f"launch: the workers finished, but {', '.join(late)} did not exit within {grace:g} s")
            status = 1
    return status


def main(argv=None):
    import argparse

    p = argparse.ArgumentParser(prog="launch.py", description="Start the scheduler, servers and workers of a "
                                "dist_sync job, as MXNet's tools/launch.py does.")
    p.add_argument("-n", "--num-workers", type=int, required=True, help="number of workers")
    p.add_argument("-s", "--num-servers", type=int, help="number of servers (default: as many as workers)")
    p.add_argument("-H", "--hostfile", help="hosts of the servers and workers, one per line (ssh launcher)")
    p.add_argument("--launcher", default="local", help="local (every process here) or ssh (default local)")
    p.add_argument("--host-ip", help="the scheduler's address that the hosts reach (default: this machine's)")
    p.add_argument("--port", type=int, default=0, help="the scheduler's port (default: a free one)")
    p.add_argument("command", nargs=argparse.REMAINDER, help="the training command, e.g. python3 -u "
                   "recognition/train.py ... --kvstore dist_sync")
    args = p.parse_args(argv)
    LAUNCHERS.get(args.launcher)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        raise FaceKDError("launch.py: no command given; append the training command, e.g. "
                          "python3 -u recognition/train.py --network y1 ... --kvstore dist_sync")
    if not any(arg.startswith("dist") for arg in command):
        raise FaceKDError("launch.py: the command has no --kvstore dist_sync (or another dist_* kvstore); "
                          "without it every worker would train alone")
    if args.launcher == "ssh" and not args.hostfile:
        raise FaceKDError("launch.py --launcher ssh needs -H HOSTFILE (one host per line)")
    hosts = read_hosts(args.hostfile) if args.hostfile else None
    if args.launcher == "local":
        uri, hosts = "127.0.0.1", None
    else:
        uri = args.host_ip or this_host_address()
    port = args.port or free_port()
    nodes = plan(args.num_workers, args.num_servers or args.num_workers, uri, port, hosts)
    return run(nodes, command, args.launcher, log=lambda m: print(m, file=sys.stderr, flush=True))
