"""The append-only ``results.jsonl``: a defensive reader and a locked, atomic writer.

Each line is one cell's record (the schema is in the package docstring). The
reader never fails on a damaged file: a line that is not UTF-8, not JSON, or not
a JSON object with a ``cell_id`` is skipped with a one-line warning naming its
line number, and a ``cell_id`` that appears on several lines counts once (the
newest by ``time``). The writer rewrites the whole file through
:func:`benchmark.io.atomic_write_bytes` under a :class:`filelock.FileLock`, so
concurrent runners can share one output directory and a reader sees the old
file or the new one, never a part.
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import tempfile
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from filelock import FileLock

from benchmark.errors import BenchmarkError
from benchmark.io import atomic_write_bytes

RESULTS = "results.jsonl"
LOCK = ".results.lock"
_PACKAGES = ("torch", "torchvision", "lightning", "wandb", "omegaconf", "scikit-learn", "numpy")


@dataclass
class ReadResult:
    """What :func:`read_records` found.

    Attributes:
        records: One record per ``cell_id``, in the order of first appearance.
        warnings: One line per skipped line and per duplicated ``cell_id``.
        skipped_lines: 1-based numbers of the lines that were skipped.
        duplicates: ``cell_id`` -> how many older lines of it were dropped.
    """

    records: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    skipped_lines: list[int] = field(default_factory=list)
    duplicates: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self):
        return iter(self.records)


def _time(record: dict[str, Any]) -> float:
    t = record.get("time")
    return float(t) if isinstance(t, (int, float)) and not isinstance(t, bool) and math.isfinite(t) else -math.inf


def parse_lines(data: bytes, source: str = RESULTS) -> ReadResult:
    """Parses the bytes of a results file (see :func:`read_records`)."""
    out = ReadResult()
    index: dict[str, int] = {}  # cell_id -> position in out.records
    for number, raw in enumerate(data.split(b"\n"), 1):
        if not raw.strip():
            continue
        why = None
        try:
            record = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            why = "is not UTF-8"
        except ValueError as e:
            why = f"is not JSON ({str(e).split(':')[0]})"
        else:
            if not isinstance(record, dict):
                why = f"is a JSON {type(record).__name__}, not a record"
            elif not isinstance(record.get("cell_id"), str) or not record["cell_id"]:
                why = "has no cell_id"
        if why is not None:
            out.skipped_lines.append(number)
            out.warnings.append(f"warning: {source} line {number} {why}; skipped")
            continue
        cid = record["cell_id"]
        if cid not in index:
            index[cid] = len(out.records)
            out.records.append(record)
            continue
        out.duplicates[cid] = out.duplicates.get(cid, 0) + 1
        old = out.records[index[cid]]
        if _time(record) >= _time(old):  # the newest wins; on a tie the later line
            out.records[index[cid]] = record
    for cid, extra in out.duplicates.items():
        out.warnings.append(f"warning: {source}: cell {cid} appears on {extra + 1} lines; counted once "
                            "(the newest)")
    return out


def read_records(output_dir: str | Path) -> ReadResult:
    """Every record of ``<output_dir>/results.jsonl``, read as bytes and parsed defensively.

    Never raises on a damaged file: bad lines are skipped and duplicated cells are
    counted once, each reported in :attr:`ReadResult.warnings`. A missing file
    reads as no records.
    """
    path = Path(output_dir) / RESULTS
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return ReadResult()
    return parse_lines(data, str(path))


def _clean(v: Any) -> Any:
    """JSON-safe: NaN/inf become None (a record never holds NaN)."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    return v


def _line_cell_id(raw: bytes) -> str | None:
    try:
        record = json.loads(raw.decode("utf-8"))
    except ValueError:  # UnicodeDecodeError is a ValueError too
        return None
    return record.get("cell_id") if isinstance(record, dict) else None


def lock(output_dir: str | Path) -> FileLock:
    """The lock that every writer of ``<output_dir>/results.jsonl`` holds."""
    return FileLock(str(Path(output_dir) / LOCK))


def append_record(output_dir: str | Path, record: dict[str, Any]) -> Path:
    """Adds one record to ``results.jsonl``, under the lock, by an atomic rewrite.

    Lines of the same ``cell_id`` are replaced (a retried cell); every other line is
    kept byte for byte, damaged ones included, so a writer never destroys what it
    cannot read.

    Raises:
        BenchmarkError: The record has no ``cell_id``.
    """
    if not isinstance(record.get("cell_id"), str) or not record["cell_id"]:
        raise BenchmarkError(f"a result record needs a cell_id; got keys {sorted(record)[:8]}")
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    line = json.dumps(_clean(record), sort_keys=True, allow_nan=False).encode("utf-8")
    path = out / RESULTS
    with lock(out):
        try:
            old = path.read_bytes()
        except FileNotFoundError:
            old = b""
        kept = [raw for raw in old.split(b"\n") if raw.strip() and _line_cell_id(raw) != record["cell_id"]]
        atomic_write_bytes(path, b"".join(raw + b"\n" for raw in [*kept, line]))
    return path


def check_writable(output_dir: str | Path, what: str = "output_dir") -> Path:
    """Creates ``output_dir`` and checks that files can be written there (``what`` names the key)."""
    out = Path(output_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=out)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise BenchmarkError(f"{what} {out} is not writable ({e.strerror}); pass {what}=PATH") from None
    return out


def curves_path(output_dir: str | Path, cell_id: str) -> Path:
    """Where a cell's relearning curves and levels are stored."""
    return Path(output_dir) / "curves" / f"{cell_id}.json"


def load_curves(output_dir: str | Path, cell_id: str) -> dict[str, Any] | None:
    """A cell's stored relearning curves and levels, or None if it has none (or they are damaged)."""
    try:
        return json.loads(curves_path(output_dir, cell_id).read_text())
    except (OSError, ValueError):
        return None


def population_path(output_dir: str | Path, cell_id: str) -> Path:
    """Where a cell's per-example population epsilons are stored (``eval.population``)."""
    return Path(output_dir) / "population" / f"{cell_id}.json"


def load_population(output_dir: str | Path, cell_id: str) -> dict[str, Any] | None:
    """A cell's stored per-example epsilons, or None if it has none (or they are damaged)."""
    try:
        d = json.loads(population_path(output_dir, cell_id).read_bytes().decode("utf-8"))
        return d if isinstance(d, dict) else None
    except (OSError, ValueError):
        return None


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for p in _PACKAGES:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            out[p] = "missing"
    return out


def git_revision() -> str:
    here = Path(__file__).resolve().parent.parent.parent
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if rev.returncode != 0:
        return "unknown"
    return rev.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
