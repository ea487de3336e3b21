"""The protocol document lives in the repository and agrees with the code."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROTOCOL = ROOT / "docs" / "protocol.md"
DEFAULTS_HEADING = re.compile(r"^## \d+\. Method defaults\s*$", re.MULTILINE)


def _protocol_text() -> str:
    assert PROTOCOL.is_file(), "docs/protocol.md is missing"
    return PROTOCOL.read_text(encoding="utf-8")


def _project_files() -> list[Path]:
    """Tracked files plus new files git does not ignore, outside tests/ and .ci/."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                         cwd=ROOT, capture_output=True, check=True).stdout.decode()
    names = sorted({n for n in out.split("\0") if n})
    return [ROOT / n for n in names
            if not n.startswith(("tests/", ".ci/")) and (ROOT / n).is_file()]


def _slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    s = heading.strip().lower()
    s = re.sub(r"[^\w\- ]", "", s)
    return s.replace(" ", "-")


def test_protocol_version_matches_the_code():
    from benchmark.version import PROTOCOL_VERSION

    m = re.search(r"^protocol_version:\s*(\S+)\s*$", _protocol_text(), re.MULTILINE)
    assert m, "docs/protocol.md has no 'protocol_version: X' line"
    assert m.group(1) == PROTOCOL_VERSION, (
        f"docs/protocol.md says protocol_version {m.group(1)}, benchmark/version.py says {PROTOCOL_VERSION}")


def test_every_registered_method_is_in_the_defaults_table():
    import baselines  # noqa: F401  (registers every method and config variant)
    from benchmark.module import METHODS

    text = _protocol_text()
    start = DEFAULTS_HEADING.search(text)
    assert start, "docs/protocol.md has no '## N. Method defaults' section"
    rest = text[start.end():]
    nxt = re.search(r"^## ", rest, re.MULTILINE)
    section = rest[: nxt.start()] if nxt else rest
    rows = set(re.findall(r"^\|\s*`([A-Za-z0-9_]+)`\s*\|", section, re.MULTILINE))
    # not tests' own, nor the sanity battery's cheats (baselines/sanity/, never part of methods=all)
    ours = {n for n, cls in METHODS.items() if cls.__module__.startswith("baselines.") and not cls.sanity}
    missing = sorted(ours - rows)
    assert not missing, f"methods missing from the defaults table of docs/protocol.md: {missing}"


def test_no_project_file_points_outside_the_repository():
    offenders = [str(p.relative_to(ROOT)) for p in _project_files() if b"../shared" in p.read_bytes()]
    assert not offenders, f"files that mention ../shared (a clone has no such folder): {offenders}"


def test_no_project_file_names_the_developers_spec():
    # the project's own protocol is docs/protocol.md; the developers' PROTOCOL.md is not shipped
    offenders = [str(p.relative_to(ROOT)) for p in _project_files() if b"PROTOCOL.md" in p.read_bytes()]
    assert not offenders, f"files that name PROTOCOL.md instead of docs/protocol.md: {offenders}"


def test_links_into_the_protocol_resolve():
    anchors = {_slug(h) for h in re.findall(r"^#{1,6} (.+)$", _protocol_text(), re.MULTILINE)}
    broken = []
    for p in _project_files():
        if p.suffix != ".md":
            continue
        for anchor in re.findall(r"protocol\.md#([\w\-]+)", p.read_text(encoding="utf-8")):
            if anchor not in anchors:
                broken.append(f"{p.relative_to(ROOT)}: #{anchor}")
    assert not broken, f"links to missing sections of docs/protocol.md: {broken}"
