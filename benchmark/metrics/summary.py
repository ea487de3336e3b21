"""Mean and 95% Student-t interval over seeds, and the table cell that shows them."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from scipy import stats

from benchmark.metrics.values import Undefined


def t_critical(df: int, level: float = 0.95) -> float:
    """Two-sided Student-t critical value: ``scipy.stats.t.ppf((1 + level) / 2, df)``."""
    return float(stats.t.ppf((1.0 + level) / 2.0, df))


def summarize(values: Iterable[float | None]) -> dict[str, Any]:
    """Mean, sample standard deviation and 95% Student-t interval of per-seed values.

    ``None`` (and :class:`Undefined`) values are left out and counted in
    ``n_missing``. With one value the interval is ``[mean, mean]`` and ``n = 1``
    says so; with none every statistic is ``None``.

    Returns:
        ``{"mean", "std" (ddof=1; 0 for n=1), "ci_low", "ci_high", "half_width",
        "n", "n_missing"}``.

    Raises:
        ValueError: A value is NaN or infinite (undefined values must be ``None``).
    """
    xs: list[float] = []
    n_missing = 0
    for v in values:
        if v is None or isinstance(v, Undefined):
            n_missing += 1
            continue
        x = float(v)
        if not math.isfinite(x):
            raise ValueError(f"summarize got {x}; undefined values must be None")
        xs.append(x)
    n = len(xs)
    if n == 0:
        empty = dict.fromkeys(("mean", "std", "ci_low", "ci_high", "half_width"))
        return {**empty, "n": 0, "n_missing": n_missing}
    mean = math.fsum(xs) / n
    std = math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / (n - 1)) if n > 1 else 0.0
    half = t_critical(n - 1) * std / math.sqrt(n) if n > 1 else 0.0
    return {
        "mean": mean,
        "std": std,
        "ci_low": mean - half,
        "ci_high": mean + half,
        "half_width": half,
        "n": n,
        "n_missing": n_missing,
    }


def format_cell(summary: dict[str, Any], digits: int = 1) -> str:
    """``"12.3 ± 1.4"`` (± = 95% half-width); ``"12.3 (n=1)"`` for one seed; ``"n/a"`` for none."""
    n = summary.get("n", 0)
    if not n or summary.get("mean") is None:
        return "n/a"
    mean = f"{summary['mean']:.{digits}f}"
    if n == 1:
        return f"{mean} (n=1)"
    half = summary.get("half_width")
    if half is None:
        half = (summary["ci_high"] - summary["ci_low"]) / 2.0
    return f"{mean} ± {half:.{digits}f}"
