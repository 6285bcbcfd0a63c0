"""Write constraints.txt: every package the requirements files bring into .venv, pinned.

    make constraints        # a throwaway environment from the requirement files, then this script

Run it with the python of an environment made from the requirement files alone, without the
old constraints (`make constraints` makes one, after a pin changed). It starts from the
packages named in the requirements files (requirements.txt, or requirements-cu112.txt with `make constraints
REQS=requirements-cu112.txt`, and requirements-test.txt), follows their declared dependencies through
the installed metadata and pins each package reached at its installed version, so that two
installs a month apart get the same versions. Packages installed by hand (a linter) are not
reached, so they are left out.

The lock is exact on the Python it is made with. A pinned release that needs a newer Python
than the oldest one supported (pyproject.toml's requires-python) gets the marker its own
Requires-Python implies, e.g. `pillow==13.0.0; python_version >= "3.11"`: pip ignores that
line on the older Pythons and takes the newest release that still supports them.
"""
import argparse
import importlib.metadata as metadata
import sys

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name

from facekd.atomic import atomic_path
from facekd.errors import FaceKDError, run_cli

SUPPORTED_PYTHONS = ("3.8", "3.9", "3.10", "3.11")  # pyproject.toml's requires-python, >=3.8,<3.12
HEADER = """\
# Every package that requirements.txt and requirements-test.txt bring in, pinned (pip's
# constraints: a line here installs nothing by itself). Written by `make constraints`
# (tools/freeze_constraints.py) from a fresh install of those two files; do not edit by hand.
# Exact on Python 3.11; a marker lets pip pick another release on a Python that the pinned
# one no longer supports (docs/installation.md).
"""


def requirement_names(path):
    """Canonical names of the requirements listed in the requirements file ``path``."""
    names = []
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError as exc:
        raise FaceKDError(f"{path}: cannot be read ({exc.strerror}); give a requirements file") from None
    for number, line in enumerate(lines, 1):
        text = line.split(" #", 1)[0].strip()
        if not text or text.startswith("#") or text.startswith("-"):
            continue
        try:
            names.append(canonicalize_name(Requirement(text).name))
        except InvalidRequirement as exc:
            raise FaceKDError(f"{path} line {number}: {text!r} is not a requirement ({exc}); "
                              "write name==version") from None
    return names


def installed(name):
    """The installed distribution ``name``, or None."""
    try:
        return metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return None


def dependency_closure(roots):
    """{canonical name: distribution} of ``roots`` and everything they require, installed."""
    found, todo = {}, list(roots)
    while todo:
        name = todo.pop()
        dist = installed(name)
        if dist is None:
            raise FaceKDError(f"{name} is not installed in {sys.prefix}; run this with the python of an "
                              "environment made from these requirements files (make constraints makes one)")
        key = canonicalize_name(dist.metadata["Name"])
        if key in found:
            continue
        found[key] = dist
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(canonicalize_name(req.name))
    return found


def python_marker(dist):
    """'' when the release supports every Python of SUPPORTED_PYTHONS, else its `python_version >=` marker."""
    text = dist.metadata.get("Requires-Python") or ""
    try:
        spec = SpecifierSet(text)
    except InvalidSpecifier:
        raise FaceKDError(f"{dist.metadata['Name']} {dist.version}: unreadable Requires-Python {text!r}; "
                          "pin another version in the requirements file") from None
    ok = [v for v in SUPPORTED_PYTHONS if spec.contains(v)]
    if len(ok) == len(SUPPORTED_PYTHONS):
        return ""
    release, supported = f"{dist.metadata['Name']} {dist.version}", f"{SUPPORTED_PYTHONS[0]}-{SUPPORTED_PYTHONS[-1]}"
    if not ok:
        raise FaceKDError(f"{release} supports none of Python {supported} (Requires-Python {text}); "
                          "pin another version in the requirements file")
    if ok != list(SUPPORTED_PYTHONS[-len(ok):]):
        raise FaceKDError(f"{release} supports only Python {', '.join(ok)} of {supported} (Requires-Python "
                          f"{text}), which no python_version >= marker can say; pin another version in the "
                          "requirements file")
    return f'python_version >= "{ok[0]}"'


def constraint_lines(dists):
    """One `name==version[; marker]` line per distribution, sorted by name."""
    lines = []
    for key in sorted(dists):
        dist = dists[key]
        marker = python_marker(dist)
        lines.append(f"{dist.metadata['Name']}=={dist.version}" + (f"; {marker}" if marker else ""))
    return lines


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n", 2)[2])
    p.add_argument("--requirements", default="requirements.txt,requirements-test.txt",
                   help="comma-separated requirements files whose packages are pinned")
    p.add_argument("--out", default="constraints.txt", help="the constraints file written")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    roots = [name for path in args.requirements.split(",") if path for name in requirement_names(path)]
    lines = constraint_lines(dependency_closure(roots))
    with atomic_path(args.out) as tmp:
        with open(tmp, "w") as f:
            f.write(HEADER + "\n".join(lines) + "\n")
    print(f"{args.out}: {len(lines)} packages pinned")


if __name__ == "__main__":
    run_cli(main)
