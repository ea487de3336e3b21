"""The result record and the append-only, atomically written ``results.jsonl``.

Each line is one cell: ``cell_id``, ``dataset``, ``model``, ``method``, ``scenario``,
``ratio``, ``seed``, ``split_hash``, ``protocol_version``, ``status`` (ok|failed),
``metrics`` (flat dict), ``directions`` (higher/lower/oracle per metric),
``undefined`` (metric -> reason), ``warnings``, the resolved ``config``,
package ``versions`` and the ``git`` revision.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import platform
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

from benchmark.errors import BenchmarkError

RESULTS = "results.jsonl"
_PACKAGES = ("torch", "torchvision", "lightning", "torchmetrics", "wandb", "omegaconf", "scikit-learn", "numpy")


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for p in _PACKAGES:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            out[p] = "missing"
    return out


def git_revision() -> str:
    here = Path(__file__).resolve().parent.parent
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if rev.returncode != 0:
        return "unknown"
    return rev.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def _clean(v: Any) -> Any:
    """JSON-safe: NaN/inf become None (a record never holds NaN)."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    return v


@contextmanager
def locked(output_dir: Path) -> Iterator[None]:
    """An exclusive file lock, so concurrent runners can share one output directory."""
    with open(output_dir / ".results.lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def read_results(output_dir: str | Path) -> list[dict[str, Any]]:
    """All parseable records; a damaged line (never written by this writer) is skipped."""
    path = Path(output_dir) / RESULTS
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records


def append_result(output_dir: str | Path, record: dict[str, Any]) -> None:
    """Appends one record: rewrite to a temporary file, fsync, rename, under the lock.

    A record with the same ``cell_id`` replaces the older one (a retried failure)."""
    out = Path(output_dir)
    with locked(out):
        path = out / RESULTS
        old = [r for r in read_results(out) if r.get("cell_id") != record["cell_id"]]
        tmp = out / f".{RESULTS}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            for r in [*old, _clean(record)]:
                f.write(json.dumps(r, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Writes a file via a temporary file and a rename: readers see the old or the new file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def curves_path(output_dir: str | Path, cell_id: str) -> Path:
    """Where a cell's relearning curves and levels are stored."""
    return Path(output_dir) / "curves" / f"{cell_id}.json"


def load_curves(output_dir: str | Path, cell_id: str) -> dict[str, Any] | None:
    """A cell's stored relearning curves and levels, or None if it has none (or they are damaged)."""
    try:
        return json.loads(curves_path(output_dir, cell_id).read_text())
    except (OSError, ValueError):
        return None


def check_writable(output_dir: str | Path) -> Path:
    out = Path(output_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise BenchmarkError(f"output_dir {out} is not writable ({e.strerror}); pass output_dir=PATH") from None
    return out
