"""Tables with 95% intervals over seeds, built from result records alone."""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

from benchmark.metrics import format_cell, summarize

# (record key, column title) of the printed table; columns with no value are dropped
COLUMNS = [
    ("eval/ua", "UA"), ("eval/ra", "RA"), ("eval/ta", "TA"), ("eval/test_forgotten/acc", "TA_forgot"),
    ("eval/mia/efficacy", "MIA-eff"), ("eval/mia/loss_acc", "Loss-MIA"), ("eval/mia/rmia_auc", "RMIA-AUC"),
    ("relearn/sgd/rcd", "RCD-sgd"), ("relearn/adam/rcd", "RCD-adam"),
    ("gap/avg", "AvgGap"), ("time/unlearn_s", "time_s"),
]
INTERVAL = "95% Student-t interval over seeds"


def group_summaries(records: list[dict[str, Any]]) -> dict[tuple, dict[str, Any]]:
    """{(dataset, scenario, ratio, method): {metric: summary, '_n': seeds}} over ok records."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in records:
        if r.get("status") == "ok":
            groups[(r["dataset"], r["scenario"], r["ratio"], r["method"])].append(r)
    out: dict[tuple, dict[str, Any]] = {}
    for key, rs in groups.items():
        keys = sorted({k for r in rs for k in r.get("metrics", {})})
        out[key] = {k: summarize([r["metrics"].get(k) for r in rs]) for k in keys}
        out[key]["_n"] = len(rs)
    return out


def format_table(records: list[dict[str, Any]], methods: list[str] | None = None) -> str:
    """One table per (dataset, scenario, ratio): method rows, mean ± CI half-width (n)."""
    rows = group_summaries(records)
    lines = []
    for ds, scen, ratio in sorted({k[:3] for k in rows}, key=lambda x: (x[0], x[1], x[2] or 0)):
        order = list(methods or []) + sorted({k[3] for k in rows} - set(methods or []))
        present = [m for m in order if (ds, scen, ratio, m) in rows]
        cols = [c for c in COLUMNS if any(rows[(ds, scen, ratio, m)].get(c[0], {}).get("n") for m in present)]
        lines.append(f"\n{ds} | scenario={scen} ratio={ratio} | mean ± half-width of the {INTERVAL}")
        header = f"{'method':<16}" + "".join(f"{t:>13}" for _, t in cols) + f"{'n':>4}"
        lines += [header, "-" * len(header)]
        for m in present:
            row = rows[(ds, scen, ratio, m)]
            cells = [format_cell(row[k]) if k in row else "-" for k, _ in cols]
            lines.append(f"{m:<16}" + "".join(f"{c:>13}" for c in cells) + f"{row['_n']:>4}")
    failed = [r for r in records if r.get("status") == "failed"]
    if failed:
        lines.append(f"\n{len(failed)} failed cell(s): "
                     + "; ".join(f"{r['method']} seed={r['seed']}: {r.get('error')}" for r in failed[:5]))
    return "\n".join(lines)


def print_table(records: list[dict[str, Any]], methods: list[str] | None = None) -> str:
    text = format_table(records, methods)
    print(text, flush=True)
    return text


def write_summary(output_dir: str | Path, records: list[dict[str, Any]]) -> Path:
    """``summary.json``: per (dataset, scenario, ratio, method), every metric's mean, std,
    95% t-interval and n; written atomically."""
    rows = group_summaries(records)
    payload = {"interval": INTERVAL, "groups": [
        {"dataset": k[0], "scenario": k[1], "ratio": k[2], "method": k[3], "n": v["_n"],
         "metrics": {m: s for m, s in v.items() if m != "_n"}} for k, v in sorted(rows.items(), key=str)]}
    path = Path(output_dir) / "summary.json"
    tmp = path.with_name(f".summary.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(payload, indent=1, default=str))
    os.replace(tmp, path)
    return path
