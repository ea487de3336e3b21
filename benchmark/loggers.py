"""Weights & Biases helpers: the mode (offline unless logged in) and the leaderboard run.

The local ``results.jsonl`` is always written first; a W&B failure prints one
warning line and never loses a result.
"""

from __future__ import annotations

import netrc
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def wandb_mode(requested: str) -> str:
    """``auto``: online when the user is logged in (WANDB_API_KEY or ~/.netrc), else offline.
    An explicit WANDB_MODE in the environment wins."""
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    if requested != "auto":
        return requested
    if os.environ.get("WANDB_API_KEY"):
        return "online"
    try:
        rc = netrc.netrc()
        if any("wandb" in host for host in rc.hosts):
            return "online"
    except (OSError, netrc.NetrcParseError):
        pass
    return "offline"


def leaderboard_rows(source: Any, current_fingerprints: Mapping[str, str] | None = None
                     ) -> tuple[list[str], list[list[Any]]]:
    """The W&B leaderboard table: (columns, rows), one row per table row of the results
    layer (``benchmark.results.summarize_rows``: one per method variant, stale records
    left out), with the mean and 95% half-width of every registry column.

    Args:
        source: An output directory, a ``ReadResult``, records, or a ``load_table`` frame.
        current_fingerprints: method -> current code fingerprint (stale marking).
    """
    from benchmark.metrics import table_columns
    from benchmark.results import (
        attackers,
        load_table,
        metric_summary,
        summarize_rows,
        table_titles,
    )

    df = load_table(source, current_fingerprints)
    cols = table_columns(attackers(df))
    titles = table_titles(df)
    head = ["table", "dataset", "model", "scenario", "ratio", "method", "variant", "label", "n", "seeds"]
    columns = head + [c.key for c in cols] + [f"{c.key} ±95%" for c in cols] + ["table_key", "row_key"]
    rows = []
    for r in summarize_rows(df, [c.key for c in cols]).to_dict("records"):
        stats = [metric_summary(r, c.key) for c in cols]
        rows.append([titles[r["table_key"]], r["dataset"], r["model"], r["scenario"], r["ratio"], r["method"],
                     r["variant"], r["label"], int(r["n"]), ",".join(str(s) for s in r["seeds"]),
                     *[s["mean"] for s in stats], *[s["half_width"] for s in stats], r["table_key"], r["row_key"]])
    return columns, rows


def log_leaderboard(project: str, mode: str, run_dir: Path, output_dir: Path,
                    current_fingerprints: Mapping[str, str] | None = None) -> None:
    """A ``leaderboard`` W&B run: a ``wandb.Table`` of :func:`leaderboard_rows` and
    ``results.jsonl`` as an artifact. A failure prints one warning line."""
    try:
        import wandb

        from benchmark.results import RESULTS

        columns, rows = leaderboard_rows(output_dir, current_fingerprints)
        table = wandb.Table(columns=columns, data=rows)
        run = wandb.init(project=project, mode=mode, dir=str(run_dir), job_type="leaderboard",
                         name="leaderboard", settings=wandb.Settings(silent=True, console="off"),
                         reinit="finish_previous")
        run.log({"leaderboard": table})
        art = wandb.Artifact("results", type="results")
        art.add_file(str(Path(output_dir) / RESULTS))
        run.log_artifact(art)
        run.finish()
    except Exception as e:  # noqa: BLE001 - tracking must never cost a local result
        print(f"warning: W&B leaderboard failed ({type(e).__name__}: {str(e)[:120]}); local results are complete",
              flush=True)
