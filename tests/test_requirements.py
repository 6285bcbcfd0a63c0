"""Requirements: runtime and test split, every pin used, the transitive lock, pyproject's ranges,
and make's interpreter check. The references are the installed packages' own metadata, the
source files' imports (parsed), and make run on fake interpreters."""
import ast
import glob
import importlib.metadata as metadata
import os
import shutil
import subprocess
import sys

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CODE_DIRS = ("src", "recognition", "data_prepare", "deploy", "bench", "tools")
IMPORT_NAMES = {"scikit-learn": "sklearn", "opencv-python-headless": "cv2", "protobuf": "google.protobuf"}
PYTHONS = ["2.7", "3.6", "3.7", "3.8", "3.9", "3.10", "3.11", "3.12", "3.13"]
SUPPORTED = ["3.8", "3.9", "3.10", "3.11"]


def pins(name):
    """{canonical name: (version, marker text or '')} of the `==` lines of a requirements file."""
    out = {}
    with open(os.path.join(ROOT, name)) as f:
        for line in f:
            text = line.split(" #", 1)[0].strip()
            if text and not text.startswith(("#", "-")):
                req = Requirement(text)
                (spec,) = req.specifier
                assert spec.operator == "==", f"{name}: {text} is not pinned with =="
                out[canonicalize_name(req.name)] = (spec.version, str(req.marker or ""))
    return out


def imported_modules(dirs):
    """Every absolute import (dotted, and each of its parents) in the .py files under ``dirs``."""
    found = set()
    for folder in dirs:
        for path in glob.glob(os.path.join(ROOT, folder, "**", "*.py"), recursive=True):
            with open(path) as f:
                tree = ast.parse(f.read(), path)
            for node in ast.walk(tree):
                names = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                for name in names:
                    parts = name.split(".")
                    found.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return found


def requires(name):
    """Canonical names that the installed ``name`` declares (no extras)."""
    reqs = [Requirement(r) for r in metadata.distribution(name).requires or []]
    return {canonicalize_name(r.name) for r in reqs if r.marker is None or r.marker.evaluate({"extra": ""})}


def installed_mxnet_build():
    for name in ("mxnet", "mxnet-cu112"):
        try:
            metadata.distribution(name)
            return name
        except metadata.PackageNotFoundError:
            continue
    pytest.skip("no MXNet build installed")


def test_runtime_and_test_requirements_are_split_and_each_pin_is_used():
    runtime, test_only = pins("requirements.txt"), pins("requirements-test.txt")
    assert not set(runtime) & set(test_only)
    code, tests = imported_modules(CODE_DIRS), imported_modules(["tests"])
    for name in runtime:
        module = IMPORT_NAMES.get(name, name)
        needed_by = [other for other in runtime if other != name and name in requires(other)]
        assert module in code or needed_by, f"requirements.txt pins {name}, which no code imports nor needs"
    assert "scipy" in requires("scikit-learn")  # scipy: pinned for sklearn.metrics, not imported
    for name in test_only:
        module = IMPORT_NAMES.get(name, name)
        assert module in tests and module not in code, f"requirements-test.txt: {name} is not a test-only tool"


def test_gpu_requirements_are_the_cpu_ones_with_the_cuda_build():
    cpu, gpu = pins("requirements.txt"), pins("requirements-cu112.txt")
    assert gpu.pop("mxnet-cu112") == cpu.pop("mxnet")
    assert gpu == cpu


def test_constraints_pin_exactly_what_the_requirements_bring_in():
    build = installed_mxnet_build()
    runtime = "requirements.txt" if build == "mxnet" else "requirements-cu112.txt"
    roots = list(pins(runtime)) + list(pins("requirements-test.txt"))
    closure, todo = set(), roots
    while todo:
        name = todo.pop()
        if name not in closure:
            closure.add(name)
            todo.extend(requires(name))
    locked = pins("constraints.txt")
    if build != "mxnet":
        locked["mxnet-cu112"] = locked.pop("mxnet")
    assert set(locked) == closure
    for name, (version, _) in locked.items():
        assert Version(metadata.version(name)) == Version(version), f"{name} installed {metadata.version(name)}"
    for name, (version, _) in {**pins(runtime), **pins("requirements-test.txt")}.items():
        assert locked[name][0] == version, f"{name}: {runtime} and constraints.txt disagree"


@pytest.mark.parametrize("requirements", ["constraints.txt", "requirements-ort.txt"])
def test_markers_follow_each_pinned_release_s_python_support(requirements):
    """No marker: the release supports 3.8-3.11; `python_version >= X`: exactly X..3.11 of them."""
    if requirements == "requirements-ort.txt":
        python = os.path.join(ROOT, ".venv-ort", "bin", "python")
        if not os.path.exists(python):
            pytest.skip("no .venv-ort (make venv-ort)")
        script = ("import importlib.metadata as m, sys\n"
                  "for n in sys.argv[1:]: print(m.metadata(n).get('Requires-Python') or '')")
        names = list(pins(requirements))
        out = subprocess.run([python, "-c", script, *names], capture_output=True, text=True, check=True)
        support = dict(zip(names, out.stdout.split("\n")))
    else:
        support = {name: metadata.metadata(name).get("Requires-Python") or "" for name in pins(requirements)}
    for name, (_, marker) in pins(requirements).items():
        spec = SpecifierSet(support[name])
        ok = [v for v in SUPPORTED if spec.contains(v)]
        expected = "" if ok == SUPPORTED else f'python_version >= "{ok[0]}"'
        assert ok == SUPPORTED[len(SUPPORTED) - len(ok):], f"{name}: supports {ok}"
        assert marker == expected, f"{requirements}: {name} needs Python {support[name]}"


def test_pyproject_declares_ranges_that_hold_the_pins():
    tomllib = pytest.importorskip("tomllib")
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        project = tomllib.load(f)["project"]
    spec = SpecifierSet(project["requires-python"])
    assert [v for v in PYTHONS if spec.contains(v)] == SUPPORTED
    extras = project["optional-dependencies"]
    files = {"cpu": ["requirements.txt"], "cu112": ["requirements-cu112.txt"], "ort": ["requirements-ort.txt"],
             "test": ["requirements-test.txt"], "train": ["requirements.txt", "requirements-cu112.txt"]}
    groups = [(project["dependencies"], [f for fs in files.values() for f in fs if f != "requirements-test.txt"])]
    groups += [(extras[name], files[name]) for name in extras]
    assert set(extras) == set(files)
    for reqs, targets in groups:
        for text in reqs:
            req = Requirement(text)
            if canonicalize_name(req.name) == "facekd":
                assert req.extras <= set(extras)
                continue
            for target in targets:
                pinned = pins(target).get(canonicalize_name(req.name))
                assert pinned, f"pyproject.toml declares {text}, which {target} does not pin"
                assert req.specifier.contains(pinned[0]), f"{text} leaves out {target}'s {pinned[0]}"
    declared = {canonicalize_name(Requirement(t).name) for t in project["dependencies"] + extras["cpu"] + extras["train"]}
    assert set(pins("requirements.txt")) <= declared


MAKE_VERSION_CASES = [
    ("venv", "3.12", "make: Python 3.12 is not supported (MXNet 1.9.1 needs numpy<1.24, which has no wheels "
                     "for it): run make venv PYTHON=python3.11"),
    ("venv", "3.13", "make: Python 3.13 is not supported (MXNet 1.9.1 needs numpy<1.24, which has no wheels "
                     "for it): run make venv PYTHON=python3.11"),
    ("venv", "3.7", "make: Python 3.7 is not supported (pyproject.toml's requires-python is >=3.8,<3.12): "
                    "run make venv PYTHON=python3.11"),
    ("venv", "2.7", "make: Python 2.7 is not supported (pyproject.toml's requires-python is >=3.8,<3.12): "
                    "run make venv PYTHON=python3.11"),
    ("venv-ort", "3.12", "make: Python 3.12 is not supported (pyproject.toml's requires-python is >=3.8,<3.12): "
                         "run make venv-ort PYTHON=python3.11"),
]


def fake_python(folder, version):
    """An interpreter that answers the version query with ``version`` and records any other call."""
    path = folder / f"python{version}"
    path.write_text('#!/bin/sh\nif [ "$1" = "-c" ]; then echo %s; exit 0; fi\n'
                    'echo "$@" > "%s"\nexit 7\n' % (version, folder / "called"))
    path.chmod(0o755)
    return path


def run_make(target, python, tmp_path):
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    venvs = [f"VENV={tmp_path / 'venv'}", f"VENV_ORT={tmp_path / 'venv-ort'}"]
    return subprocess.run(["make", "-s", "-C", ROOT, target, f"PYTHON={python}", *venvs],
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("target,version,line", MAKE_VERSION_CASES)
def test_make_stops_on_an_unsupported_python_before_making_anything(tmp_path, target, version, line):
    result = run_make(target, fake_python(tmp_path, version), tmp_path)
    assert result.returncode != 0
    assert result.stderr.splitlines()[0] == line
    assert not (tmp_path / "called").exists()  # never asked to make the environment
    assert not (tmp_path / "venv").exists() and not (tmp_path / "venv-ort").exists()


@pytest.mark.parametrize("target", ["venv", "venv-ort"])
@pytest.mark.parametrize("version", SUPPORTED)
def test_make_goes_on_with_a_supported_python(tmp_path, target, version):
    result = run_make(target, fake_python(tmp_path, version), tmp_path)
    folder = tmp_path / ("venv" if target == "venv" else "venv-ort")
    assert (tmp_path / "called").read_text().split() == ["-m", "venv", str(folder)]
    assert "not supported" not in result.stderr


def test_make_names_a_missing_interpreter(tmp_path):
    result = run_make("venv", tmp_path / "python3.99", tmp_path)
    assert result.returncode != 0
    assert result.stderr.splitlines()[0] == f"make: {tmp_path / 'python3.99'} not found: run make venv PYTHON=python3.11"


def run_freeze(tmp_path, *args, env=None):
    tool = os.path.join(ROOT, "tools", "freeze_constraints.py")
    return subprocess.run([sys.executable, tool, *args], capture_output=True, text=True, cwd=ROOT, timeout=120,
                          env={**os.environ, "MXNET_OMP_MAX_THREADS": "1", **(env or {})})


def test_freeze_writes_the_lock_of_this_environment(tmp_path):
    build = installed_mxnet_build()
    runtime = "requirements.txt" if build == "mxnet" else "requirements-cu112.txt"
    out = tmp_path / "constraints.txt"
    result = run_freeze(tmp_path, "--requirements", f"{runtime},requirements-test.txt", "--out", str(out))
    assert result.returncode == 0, result.stderr
    locked = pins("constraints.txt")
    if build != "mxnet":
        locked["mxnet-cu112"] = locked.pop("mxnet")
    written = {}
    for line in out.read_text().splitlines():
        if line and not line.startswith("#"):
            req = Requirement(line)
            written[canonicalize_name(req.name)] = (next(iter(req.specifier)).version, str(req.marker or ""))
    assert written == locked


def test_freeze_refuses_what_it_cannot_lock(tmp_path):
    missing = run_freeze(tmp_path, "--requirements", str(tmp_path / "nope.txt"), "--out", str(tmp_path / "c.txt"))
    assert missing.returncode == 2
    assert missing.stderr.strip() == (f"freeze_constraints.py: error: {tmp_path / 'nope.txt'}: cannot be read "
                                      "(No such file or directory); give a requirements file")
    (tmp_path / "reqs.txt").write_text("not-installed-anywhere==1.0\n")
    absent = run_freeze(tmp_path, "--requirements", str(tmp_path / "reqs.txt"), "--out", str(tmp_path / "c.txt"))
    assert absent.returncode == 2 and absent.stderr.count("\n") == 1
    assert "error: not-installed-anywhere is not installed in" in absent.stderr
    (tmp_path / "reqs.txt").write_text("# pins\nnumpy = 1.23.5\n")
    garbled = run_freeze(tmp_path, "--requirements", str(tmp_path / "reqs.txt"), "--out", str(tmp_path / "c.txt"))
    assert garbled.returncode == 2 and garbled.stderr.count("\n") == 1
    assert f"error: {tmp_path / 'reqs.txt'} line 2: 'numpy = 1.23.5' is not a requirement (" in garbled.stderr
    assert garbled.stderr.rstrip().endswith("; write name==version")
    assert not os.path.exists(tmp_path / "c.txt")


FREEZE_METADATA_CASES = [
    ("==3.9.*", "holey 1.0 supports only Python 3.9 of 3.8-3.11 (Requires-Python ==3.9.*), which no "
                "python_version >= marker can say; pin another version in the requirements file"),
    (">=3.12", "holey 1.0 supports none of Python 3.8-3.11 (Requires-Python >=3.12); pin another version in "
               "the requirements file"),
    (">=three", "holey 1.0: unreadable Requires-Python '>=three'; pin another version in the requirements file"),
]


@pytest.mark.parametrize("requires_python,message", FREEZE_METADATA_CASES)
def test_freeze_refuses_a_release_no_marker_describes(tmp_path, requires_python, message):
    site = tmp_path / "site"
    (site / "holey-1.0.dist-info").mkdir(parents=True)
    (site / "holey-1.0.dist-info" / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: holey\nVersion: 1.0\nRequires-Python: {requires_python}\n")
    (tmp_path / "reqs.txt").write_text("holey==1.0\n")
    result = run_freeze(tmp_path, "--requirements", str(tmp_path / "reqs.txt"), "--out", str(tmp_path / "c.txt"),
                        env={"PYTHONPATH": str(site)})
    assert result.returncode == 2
    assert result.stderr.strip() == f"freeze_constraints.py: error: {message}"
    assert not os.path.exists(tmp_path / "c.txt")
