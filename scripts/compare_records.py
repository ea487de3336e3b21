"""Compares two output directories cell for cell: the same cells, and equal metrics (wall-clock
fields aside). Used to check that ``executor=ray`` and ``executor=local`` give the same numbers.

    python scripts/compare_records.py outputs/local outputs/ray

Exits 0 when every cell of either is in both with the same status and metrics, 1 otherwise
(naming the first differences).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmark.results import read_records  # noqa: E402

WALL_CLOCK = ("time/",)  # time/unlearn_s, time/rte, ...: wall seconds differ between any two runs


def _equal(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    return a == b


def compare(left: str | Path, right: str | Path) -> list[str]:
    """The differences between two outputs, one line each (empty: equal)."""
    a = {r["cell_id"]: r for r in read_records(left).records}
    b = {r["cell_id"]: r for r in read_records(right).records}
    diffs = [f"cell {c} ({(a.get(c) or b.get(c))['method']}) only in {left if c in a else right}"
             for c in sorted(set(a) ^ set(b))]
    for cid in sorted(set(a) & set(b)):
        ra, rb = a[cid], b[cid]
        where = f"{ra['method']} ratio={ra['ratio']} seed={ra['seed']}"
        if ra["status"] != rb["status"]:
            diffs.append(f"{where}: status {ra['status']} vs {rb['status']}")
        ma = {k: v for k, v in ra.get("metrics", {}).items() if not k.startswith(WALL_CLOCK)}
        mb = {k: v for k, v in rb.get("metrics", {}).items() if not k.startswith(WALL_CLOCK)}
        for k in sorted(set(ma) | set(mb)):
            if not _equal(ma.get(k), mb.get(k)):
                diffs.append(f"{where}: {k} {ma.get(k)!r} vs {mb.get(k)!r}")
        for key in ("split_hash", "reference", "undefined"):
            if ra.get(key) != rb.get(key):
                diffs.append(f"{where}: {key} differs")
    return diffs


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[0])
        print("usage: python scripts/compare_records.py OUTPUT_DIR_A OUTPUT_DIR_B")
        return 2
    diffs = compare(*argv)
    n = len(read_records(argv[0]).records)
    metrics = sum(len([k for k in r.get("metrics", {}) if not k.startswith(WALL_CLOCK)])
                  for r in read_records(argv[0]).records)
    if diffs:
        print(f"{len(diffs)} difference(s):")
        print("\n".join(diffs[:40]))
        return 1
    print(f"equal: {n} cells, {metrics} metric values (wall-clock time/* aside)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
