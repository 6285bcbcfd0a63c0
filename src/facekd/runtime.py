"""Process-wide settings that must be in place before MXNet is imported.

MXNet 1.9 sizes its OpenMP pool, when neither ``OMP_NUM_THREADS`` nor
``MXNET_OMP_MAX_THREADS`` is set, as half the logical CPUs: it assumes two
hyper-threads per core. On a machine without SMT (a VM with dedicated vCPUs, such
as the 2-core machine this project is developed on) that leaves half the cores idle:
a y1 forward of 64 images took 158 ms with the default and 80 ms with both cores.
:func:`configure_openmp` gives MXNet one thread per *physical* core available to the
process instead, read from the CPU topology, and leaves any user setting alone.

:func:`quiet_subgraph_log` keeps MXNet from printing "Subgraph backend MKLDNN is
activated." on stderr each time a graph is bound, so that a failing command's stderr
is the one line of its error.
"""
import os
import sys

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MXNET_OMP_MAX_THREADS")


def available_cpus():
    """Logical CPU numbers this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def physical_cores(cpus=None, sysfs="/sys/devices/system/cpu"):
    """Number of distinct physical cores among ``cpus`` (hyper-thread siblings count once).

    Siblings share one ``topology/thread_siblings_list``; a CPU whose topology cannot be
    read counts as a core of its own.
    """
    cores = set()
    for cpu in available_cpus() if cpus is None else cpus:
        try:
            with open(os.path.join(sysfs, f"cpu{cpu}", "topology", "thread_siblings_list")) as f:
                cores.add(f.read().strip())
        except OSError:
            cores.add(f"cpu{cpu}")
    return max(1, len(cores))


def configure_openmp(environ=None, modules=None):
    """Set ``MXNET_OMP_MAX_THREADS`` to the physical core count unless the user chose a thread count.

    Returns the value set, or None when nothing was changed (a user setting, or MXNet
    already imported, when it is too late to matter).
    """
    environ = os.environ if environ is None else environ
    modules = sys.modules if modules is None else modules
    if any(name in environ for name in THREAD_VARIABLES) or "mxnet" in modules:
        return None
    environ["MXNET_OMP_MAX_THREADS"] = str(physical_cores())
    return environ["MXNET_OMP_MAX_THREADS"]


def quiet_subgraph_log(environ=None):
    """``MXNET_SUBGRAPH_VERBOSE=0`` unless the user set it; returns the value in force."""
    environ = os.environ if environ is None else environ
    return environ.setdefault("MXNET_SUBGRAPH_VERBOSE", "0")
