"""Tables with 95% intervals over seeds, built from result records alone.

Every table here reads the one results layer (:func:`benchmark.results.load_table`
and :func:`benchmark.results.summarize_rows`): one table per ``table_key``, one row
per ``row_key`` (a method variant), the seeds of that row pooled. Columns come from
the metric registry (:func:`benchmark.metrics.table_columns`).

The runner prints :func:`format_table` and writes :func:`write_summary` after a sweep;
``python -m benchmark report OUT`` calls :func:`write_leaderboard`
(:mod:`benchmark.leaderboard`), which reads only ``OUT/results.jsonl`` and
``OUT/curves/*.json``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from benchmark.io import atomic_write_text
from benchmark.leaderboard import STALE, write_leaderboard
from benchmark.metrics import Column, format_cell, table_columns
from benchmark.results import (
    attackers,
    load_table,
    metric_keys,
    metric_summary,
    summarize_rows,
    table_order,
    table_titles,
)
from benchmark.results.table import Source, method_args

INTERVAL = "95% Student-t interval over seeds"

__all__ = ["INTERVAL", "format_table", "print_table", "stale_line", "write_leaderboard", "write_summary"]


def stale_line(df: pd.DataFrame, table_key: str) -> str | None:
    """The note under a table that has stale records (not ranked, not pooled), else None."""
    n = int((df["stale"] & (df["table_key"] == table_key)).sum())
    return STALE.format(n=n) if n else None


def _columns(df: pd.DataFrame, rows: list[dict[str, Any]]) -> list[Column]:
    """The registry's columns that hold a value in at least one of ``rows``."""
    return [c for c in table_columns(attackers(df)) if any(metric_summary(r, c.key)["n"] for r in rows)]


def _order(rows: list[dict[str, Any]], methods: Sequence[str] | None) -> list[dict[str, Any]]:
    rank = {m: i for i, m in enumerate(methods or [])}
    return sorted(rows, key=lambda r: (rank.get(r["method"], len(rank)), r["method"], r["label"]))


def format_table(source: Source, methods: Sequence[str] | None = None,
                 current_fingerprints: Mapping[str, str] | None = None) -> str:
    """One table per ``table_key``: a row per method variant, mean ± CI half-width, and n.

    Args:
        source: An output directory, a :class:`benchmark.results.ReadResult`, records,
            or a :func:`benchmark.results.load_table` frame.
        methods: Methods listed first, in this order; the others follow by name.
        current_fingerprints: method -> current code fingerprint (stale marking).
    """
    df = load_table(source, current_fingerprints)
    summary = summarize_rows(df).to_dict("records")
    titles = table_titles(df)
    lines = []
    for tk in table_order(df):
        rows = _order([r for r in summary if r["table_key"] == tk], methods)
        stale = stale_line(df, tk)
        if not rows and not stale:
            continue
        cols = _columns(df, rows)
        lines.append(f"\n{titles[tk]} | mean ± half-width of the {INTERVAL}")
        body = [[format_cell(metric_summary(r, c.key), c.digits) if metric_summary(r, c.key)["n"] else "-"
                 for c in cols] for r in rows]
        # each column as wide as its widest cell, so long values never run together
        widths = [max([len(c.title)] + [len(b[i]) for b in body]) + 2 for i, c in enumerate(cols)]
        name_w = max([16] + [len(r["label"]) + 1 for r in rows])
        header = f"{'method':<{name_w}}" + "".join(f"{c.title:>{w}}" for c, w in zip(cols, widths, strict=True))
        lines += [header + f"{'n':>4}", "-" * (len(header) + 4)]
        for r, cells in zip(rows, body, strict=True):
            lines.append(f"{r['label']:<{name_w}}" + "".join(f"{c:>{w}}" for c, w in zip(cells, widths, strict=True))
                         + f"{r['n']:>4}")
        if stale:
            lines.append(stale)
    failed = df[(df["status"] == "failed") & ~df["stale"]]
    if len(failed):
        lines.append(f"\n{len(failed)} failed cell(s): " + "; ".join(
            f"{label} seed={seed}: {rec.get('error')}"
            for label, seed, rec in list(zip(failed["label"], failed["seed"], failed["record"], strict=True))[:5]))
    return "\n".join(lines)


def print_table(source: Source, methods: Sequence[str] | None = None,
                current_fingerprints: Mapping[str, str] | None = None) -> str:
    """Prints :func:`format_table` and returns it."""
    text = format_table(source, methods, current_fingerprints)
    print(text, flush=True)
    return text


def summary_payload(source: Source, current_fingerprints: Mapping[str, str] | None = None) -> dict[str, Any]:
    """What :func:`write_summary` writes: per table its title and stale count, per row its
    identity, hyperparameters, seeds and every metric's mean, std, 95% interval and n."""
    df = load_table(source, current_fingerprints)
    summary = summarize_rows(df)
    titles = table_titles(df)
    records = dict(zip(df["cell_id"], df["record"], strict=True))
    keys = metric_keys(df)
    rows = []
    for r in summary.to_dict("records"):
        cells = [records[c] for c in r["cell_ids"]]
        first = cells[0]
        # the keys this row's records hold (a value or a null with its reason), not every key of the file
        held = {k for c in cells for k in (c.get("metrics") or {})}
        rows.append({"table_key": r["table_key"], "row_key": r["row_key"], "table": titles[r["table_key"]],
                     "dataset": r["dataset"], "model": r["model"], "scenario": r["scenario"], "ratio": r["ratio"],
                     "method": r["method"], "variant": r["variant"], "label": r["label"],
                     "hparams": method_args(first),
                     "hparams_source": first.get("hparams_source"), "n": int(r["n"]), "seeds": list(r["seeds"]),
                     "cell_ids": list(r["cell_ids"]),
                     "metrics": {k: metric_summary(r, k) for k in keys if k in held}})
    tables = [{"table_key": tk, "title": titles[tk], "stale": int((df["stale"] & (df["table_key"] == tk)).sum())}
              for tk in table_order(df)]
    return {"interval": INTERVAL, "tables": tables, "rows": rows}


def write_summary(output_dir: str | Path, source: Source | None = None,
                  current_fingerprints: Mapping[str, str] | None = None) -> Path:
    """Writes ``summary.json`` (:func:`summary_payload`) atomically.

    Args:
        output_dir: Where to write it.
        source: The records (default: ``output_dir``'s ``results.jsonl``).
        current_fingerprints: method -> current code fingerprint (stale marking).
    """
    import json

    payload = summary_payload(output_dir if source is None else source, current_fingerprints)
    path = Path(output_dir) / "summary.json"
    atomic_write_text(path, json.dumps(payload, indent=1, default=str))
    return path
