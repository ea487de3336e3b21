"""Tables with intervals over seeds, from result records alone."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from benchmark.metrics import summarize

# (record key, column title) of the printed table
COLUMNS = [
    ("eval/ua", "UA"), ("eval/ra", "RA"), ("eval/ta", "TA"), ("eval/test_forgotten/acc", "TA_f"),
    ("eval/mia/efficacy", "MIA"), ("gap/avg", "AvgGap"), ("time/unlearn_s", "time_s"),
]


def _fmt(s: dict[str, Any]) -> str:
    if not s or s.get("n", 0) == 0 or s.get("mean") is None:
        return "-"
    if s["n"] == 1:
        return f"{s['mean']:.2f} (n=1)"
    return f"{s['mean']:.2f} ± {s['std']:.2f}"


def table_rows(records: list[dict[str, Any]], methods: list[str] | None = None) -> dict[tuple, dict[str, dict]]:
    """{(scenario, ratio, method): {metric: summary}} over seeds, ok records only."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in records:
        if r.get("status") == "ok":
            groups[(r["scenario"], r["ratio"], r["method"])].append(r)
    out = {}
    for key, rs in groups.items():
        out[key] = {k: summarize([r["metrics"].get(k) for r in rs]) for k, _ in COLUMNS}
        out[key]["_n"] = len(rs)
    return out


def print_table(records: list[dict[str, Any]], methods: list[str] | None = None) -> str:
    """Prints one table per (scenario, ratio): method rows, mean ± std over seeds."""
    rows = table_rows(records, methods)
    failed = [r for r in records if r.get("status") == "failed"]
    cols = [c for c in COLUMNS if any(rows[k][c[0]].get("n", 0) for k in rows)]
    lines = []
    for scen, ratio in sorted({(k[0], k[1]) for k in rows}, key=lambda x: (x[0], x[1] or 0)):
        order = methods or sorted({k[2] for k in rows})
        present = [m for m in order if (scen, ratio, m) in rows]
        lines.append(f"\n{records[0]['dataset']} | scenario={scen} ratio={ratio} | mean ± std over seeds (n)")
        header = f"{'method':<16}" + "".join(f"{t:>18}" for _, t in cols) + f"{'n':>4}"
        lines += [header, "-" * len(header)]
        for m in present:
            row = rows[(scen, ratio, m)]
            lines.append(f"{m:<16}" + "".join(f"{_fmt(row[k]):>18}" for k, _ in cols) + f"{row['_n']:>4}")
    if failed:
        lines.append(f"\n{len(failed)} failed cell(s): " + "; ".join(f"{r['method']} seed={r['seed']}: {r.get('error')}"
                                                         for r in failed[:5]))
    text = "\n".join(lines)
    print(text, flush=True)
    return text
