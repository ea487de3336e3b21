"""Unlearning diagnostics: every ``unlearn/*`` value a method logs, kept per cell.

A Lightning :class:`~lightning.pytorch.loggers.Logger`, so methods log through the
usual ``self.log_dict`` (the base class does it every ``log_every_n_steps`` steps).
The rows are written to ``<output_dir>/diagnostics/<cell_id>.csv`` when the fit ends
(by the rank-zero process, also under ``ddp_spawn``) and read back into the cell
result, which hands them to W&B.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities import rank_zero_only

from benchmark.io import atomic_write_text


class DiagnosticsLogger(Logger):
    """Collects logged scalars by step and writes them as one CSV file."""

    def __init__(self, path: str | Path | None) -> None:
        super().__init__()
        self.path = Path(path) if path else None
        self.rows: list[dict[str, float]] = []

    @property
    def name(self) -> str:
        return "diagnostics"

    @property
    def version(self) -> str:
        return "0"

    @rank_zero_only
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        pass

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        row = {"step": float(step or 0)}
        row.update({k: float(v) for k, v in metrics.items()})
        self.rows.append(row)

    @rank_zero_only
    def finalize(self, status: str) -> None:
        if self.path is not None:
            write_rows(self.path, self.rows)

    def read(self) -> list[dict[str, float]]:
        """The rows: in memory, or from the file a spawned worker wrote."""
        if self.rows or self.path is None or not self.path.exists():
            return list(self.rows)
        with open(self.path, newline="") as f:
            return [{k: float(v) for k, v in r.items() if v != ""} for r in csv.DictReader(f)]


def write_rows(path: str | Path, rows: list[dict[str, float]]) -> None:
    """The diagnostics CSV of one cell (nothing when it logged no row)."""
    if not rows:
        return
    cols = ["step", *sorted({k for r in rows for k in r} - {"step"})]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, restval="")
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(Path(path), buf.getvalue())
