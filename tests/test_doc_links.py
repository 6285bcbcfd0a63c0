"""The README and docs/: every relative link resolves (file and #anchor), and nothing in the
repository points to documents that are not part of it."""
import glob
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = ["README.md", "models/README.md"] + sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "docs", "*.md")))
LINK = re.compile(r"\[(?:[^\]\\]|\\.)*\]\(([^)\s]+)\)")
CODE_SPAN = re.compile(r"`[^`\n]*`")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
# documents of the project's design that live outside the repository: never to be referred to
OUTSIDE = re.compile(r"(?<![\w./-])" + "spec" + r"/|\.\./" + "shared" + r"\b|\b" + "DESIGN" + r"\.md\b|/work/" + "shared")
SOURCE_DIRS = ("src", "recognition", "data_prepare", "deploy", "bench", "tools", "tests", ".ci")


def read(rel):
    with open(os.path.join(ROOT, rel), encoding="utf-8") as f:
        return f.read()


def prose_lines(text):
    """The lines outside fenced and indented code blocks, code spans removed: where links live."""
    out, fenced = [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if fenced or line.startswith("    ") or line.startswith("\t"):
            continue
        out.append(CODE_SPAN.sub("", line))
    return out


def anchors(rel):
    """GitHub's anchors of the headings of ``rel``: lower case, punctuation dropped, spaces as '-'."""
    seen, out, fenced = {}, set(), False
    for line in read(rel).splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        match = None if fenced else HEADING.match(line)
        if match:
            text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", match.group(2)).replace("`", "")
            slug = re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")
            n = seen.get(slug, 0)
            seen[slug] = n + 1
            out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def links(rel):
    return [target for line in prose_lines(read(rel)) for target in LINK.findall(line)]


@pytest.mark.parametrize("rel", DOCS)
def test_every_relative_link_resolves(rel):
    broken = []
    for target in links(rel):
        if re.match(r"^[a-z]+:", target):  # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        dest = os.path.normpath(os.path.join(os.path.dirname(rel), path)) if path else rel
        if not os.path.exists(os.path.join(ROOT, dest)):
            broken.append(f"{target} (no {dest})")
        elif anchor and dest.endswith(".md") and anchor not in anchors(dest):
            broken.append(f"{target} (no heading #{anchor} in {dest})")
    assert not broken, f"{rel}: broken links: {broken}"


def test_the_checks_see_links_and_headings():
    """The link pattern and the slugs on known cases (so that the test above can fail)."""
    assert LINK.findall("see [docs/x.md](docs/x.md#a-b) and [y](../y.md), `[z](no.md)`") == ["docs/x.md#a-b", "../y.md", "no.md"]
    assert prose_lines("a `[z](no.md)` b\n    [c](code.md)\n```\n[d](fenced.md)\n```") == ["a  b"]
    assert "devices-gpus-cpu-contexts-several-machines" in {
        re.sub(r"[^\w\- ]", "", "Devices: GPUs, CPU contexts, several machines".lower()).replace(" ", "-")}
    assert "README.md" in DOCS and "docs/training.md" in DOCS


def test_nothing_refers_to_documents_outside_the_repository():
    found = []
    files = DOCS + [os.path.relpath(p, ROOT) for d in SOURCE_DIRS
                    for p in glob.glob(os.path.join(ROOT, d, "**", "*"), recursive=True)
                    if os.path.isfile(p) and p.endswith((".py", ".md", ".txt", ".toml", ".cfg"))]
    files += ["Makefile", "pyproject.toml"] + sorted(os.path.basename(p) for p in glob.glob(os.path.join(ROOT, "*.txt")))
    for rel in files:
        for number, line in enumerate(read(rel).splitlines(), 1):
            if OUTSIDE.search(line):
                found.append(f"{rel}:{number}: {line.strip()[:100]}")
    assert not found, "references to files that are not in the repository:\n" + "\n".join(found)
