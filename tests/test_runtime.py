"""OpenMP thread count given to MXNet: one thread per physical core, user settings win."""
import os
import shutil
import subprocess
import sys

import pytest

from facekd.runtime import configure_openmp, physical_cores


def fake_sysfs(root, siblings):
    """cpu<N>/topology/thread_siblings_list for each {cpu: siblings string}."""
    for cpu, text in siblings.items():
        folder = root / f"cpu{cpu}" / "topology"
        folder.mkdir(parents=True)
        (folder / "thread_siblings_list").write_text(text + "\n")
    return str(root)


def test_hyperthread_siblings_count_once(tmp_path):
    sysfs = fake_sysfs(tmp_path, {0: "0,2", 1: "1,3", 2: "0,2", 3: "1,3"})
    assert physical_cores([0, 1, 2, 3], sysfs) == 2
    assert physical_cores([0, 2], sysfs) == 1
    assert physical_cores([0, 1], sysfs) == 2


def test_no_smt_counts_every_cpu(tmp_path):
    sysfs = fake_sysfs(tmp_path, {0: "0", 1: "1", 2: "2"})
    assert physical_cores([0, 1, 2], sysfs) == 3


def test_unreadable_topology_counts_each_cpu(tmp_path):
    assert physical_cores([0, 5, 7], str(tmp_path)) == 3


def test_sets_mxnet_threads_when_unset():
    env = {}
    value = configure_openmp(env, modules={})
    assert value == env["MXNET_OMP_MAX_THREADS"] == str(physical_cores())


@pytest.mark.parametrize("variable", ["OMP_NUM_THREADS", "MXNET_OMP_MAX_THREADS"])
def test_user_setting_wins(variable):
    env = {variable: "1"}
    assert configure_openmp(env, modules={}) is None
    assert env == {variable: "1"}


def test_too_late_once_mxnet_is_imported():
    env = {}
    assert configure_openmp(env, modules={"mxnet": object()}) is None
    assert env == {}


def lscpu_cores():
    """Physical cores in this process's affinity mask, as lscpu reports the topology."""
    out = subprocess.run(["lscpu", "-p=CPU,CORE,SOCKET"], capture_output=True, text=True, check=True).stdout
    allowed = os.sched_getaffinity(0)
    rows = [line.split(",") for line in out.splitlines() if line and not line.startswith("#")]
    return len({(socket, core) for cpu, core, socket in rows if int(cpu) in allowed})


@pytest.mark.skipif(shutil.which("lscpu") is None, reason="lscpu not installed")
def test_importing_facekd_sets_physical_core_count():
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MXNET_OMP_MAX_THREADS")}
    code = "import os, facekd, mxnet; print(os.environ['MXNET_OMP_MAX_THREADS'])"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert int(out.stdout.strip()) == lscpu_cores()


def test_binding_a_graph_prints_nothing_on_stderr():
    """MXNet logs 'Subgraph backend MKLDNN is activated.' per bind unless MXNET_SUBGRAPH_VERBOSE=0."""
    env = {k: v for k, v in os.environ.items() if k != "MXNET_SUBGRAPH_VERBOSE"}
    code = ("import {first}mxnet as mx\n"
            "s = mx.sym.Activation(mx.sym.Convolution(mx.sym.Variable('data'), kernel=(3, 3), num_filter=4),"
            " act_type='relu')\n"
            "m = mx.mod.Module(s, label_names=None); m.bind([('data', (1, 3, 8, 8))], for_training=False)\n"
            "m.init_params(); m.forward(mx.io.DataBatch([mx.nd.ones((1, 3, 8, 8))]), is_train=False)\n"
            "m.get_outputs()[0].asnumpy()\n")
    plain = subprocess.run([sys.executable, "-c", code.format(first="")], env=env, capture_output=True, text=True)
    assert "Subgraph backend" in plain.stderr  # what MXNet alone prints: the test can fail
    quiet = subprocess.run([sys.executable, "-c", code.format(first="facekd, ")], env=env, capture_output=True,
                           text=True)
    assert quiet.returncode == 0 and quiet.stderr == ""
