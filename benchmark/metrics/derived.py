"""Registered metrics that read more than the model's outputs: gaps to the oracle,
cost (timings) and weight-space distances.

Each is a :class:`~benchmark.metrics.core.Metric` like the others; it declares what it
``requires`` and :func:`~benchmark.metrics.core.compute_metrics` evaluates it when the
context holds that (the oracle's values, the weights, the timings).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from benchmark.errors import BenchmarkError
from benchmark.metrics.core import MetricContext, register_metric
from benchmark.metrics.values import NotedFloat, Undefined, is_defined

if TYPE_CHECKING:
    import torch

#: gap key -> the record key it compares.
GAP_KEYS: dict[str, str] = {
    "gap/ua": "eval/ua",
    "gap/ra": "eval/ra",
    "gap/ta": "eval/ta",
    "gap/mia_efficacy": "eval/mia/efficacy",
}


def _lookup(record: Mapping[str, Any], key: str, who: str) -> float | Undefined:
    if key not in record:
        return Undefined(f"{key} missing from the {who} record")
    v = record[key]
    if isinstance(v, Undefined):
        return Undefined(f"{key} undefined for the {who}: {v.reason}")
    if not is_defined(v):
        return Undefined(f"{key} undefined for the {who}")
    return float(v)


def gap_metrics(unlearned: Mapping[str, Any], oracle: Mapping[str, Any]) -> dict[str, float | Undefined]:
    """Absolute gaps to the retrain oracle and their average (SalUn's "Avg Gap").

    ``gap/<m> = |m(theta_u) - m(theta_r)|`` in percentage points for m in UA, RA,
    TA and MIA-efficacy; ``gap/avg`` is the mean of the four. If MIA-efficacy is
    undefined on either side, ``gap/avg`` is the mean of the other three and is a
    :class:`NotedFloat` whose note says so; if UA, RA or TA is undefined,
    ``gap/avg`` is undefined.
    """
    out: dict[str, float | Undefined] = {}
    for gap_key, key in GAP_KEYS.items():
        u, o = _lookup(unlearned, key, "unlearned model"), _lookup(oracle, key, "oracle")
        bad = [v for v in (u, o) if isinstance(v, Undefined)]
        out[gap_key] = Undefined("; ".join(b.reason for b in bad)) if bad else abs(u - o)
    core = ["gap/ua", "gap/ra", "gap/ta"]
    missing = [k for k in core if isinstance(out[k], Undefined)]
    if missing:
        out["gap/avg"] = Undefined(f"{', '.join(missing)} undefined")
    elif isinstance(out["gap/mia_efficacy"], Undefined):
        mean = sum(out[k] for k in core) / len(core)
        out["gap/avg"] = NotedFloat(mean, "mean over gap/ua, gap/ra, gap/ta only: gap/mia_efficacy undefined "
                                          f"({out['gap/mia_efficacy'].reason})")
    else:
        out["gap/avg"] = sum(out[k] for k in GAP_KEYS) / len(GAP_KEYS)
    return out


def _gap(key: str) -> Any:
    def fn(ctx: MetricContext) -> float | Undefined:
        return ctx.cached("gaps", lambda: gap_metrics(ctx.values, ctx.oracle_values or {}))[key]

    return fn


for _key, _of in GAP_KEYS.items():
    register_metric(_key, "lower", requires=("outputs", "oracle"),
                    doc=f"|{_of}(theta_u) - {_of}(theta_r)|, percentage points.")(_gap(_key))


@register_metric("gap/avg", "lower", requires=("outputs", "oracle"), title="AvgGap", digits=2, order=40,
                 progress=True)
def avg_gap(ctx: MetricContext) -> float | Undefined:
    """Avg Gap: mean of |UA|, |RA|, |TA| and |MIA-efficacy| gaps to the oracle (of the other three, noted,
    if MIA-efficacy is undefined), percentage points."""
    return _gap("gap/avg")(ctx)


def weight_distance(state_a: Mapping[str, torch.Tensor], state_b: Mapping[str, torch.Tensor],
                    keys: Iterable[str] | None = None) -> float | Undefined:
    """Relative distance ``||a - b|| / ||b||`` (Frobenius norm over all ``keys`` together).

    Args:
        state_a: State dict of the model to measure (theta_u).
        state_b: State dict of the reference (theta_o or theta_r).
        keys: Names to include; default every floating-point tensor of ``state_b``.

    Returns:
        The distance (accumulated in float64), or :class:`Undefined` when ``||b|| = 0``
        or a weight is not finite.

    Raises:
        BenchmarkError: A key is missing from either state or shapes differ.
    """
    import torch

    names = [k for k, v in state_b.items() if torch.is_floating_point(v)] if keys is None else list(keys)
    if not names:
        raise BenchmarkError("weight_distance: no tensors to compare")
    missing = [k for k in names if k not in state_a or k not in state_b]
    if missing:
        raise BenchmarkError(f"weight_distance: keys missing from a state dict: {missing[:5]}")
    diff_sq = ref_sq = 0.0
    for k in names:
        a = state_a[k].detach().to(device="cpu", dtype=torch.float64)
        b = state_b[k].detach().to(device="cpu", dtype=torch.float64)
        if a.shape != b.shape:
            raise BenchmarkError(f"weight_distance: {k} has shape {tuple(a.shape)} vs {tuple(b.shape)}")
        diff_sq += float((a - b).square().sum())
        ref_sq += float(b.square().sum())
    if not (math.isfinite(diff_sq) and math.isfinite(ref_sq)):
        return Undefined("weights contain non-finite values")
    if ref_sq == 0.0:
        return Undefined("the reference weights have zero norm")
    return math.sqrt(diff_sq / ref_sq)


@register_metric("weight/dist_original", "info", requires=("weights",))
def dist_original(ctx: MetricContext) -> float | Undefined:
    """||theta_u - theta_o|| / ||theta_o|| over trainable parameters."""
    return weight_distance(ctx.weights["model"], ctx.weights["original"])


@register_metric("weight/dist_oracle", "lower", requires=("weights",))
def dist_oracle(ctx: MetricContext) -> float | Undefined:
    """||theta_u - theta_r|| / ||theta_r|| over trainable parameters."""
    return weight_distance(ctx.weights["model"], ctx.weights["oracle"])


def time_metrics(unlearn_s: float, oracle_s: float | None) -> dict[str, float | Undefined]:
    """Cost of unlearning: ``time/unlearn_s`` and ``time/rte = oracle_s / unlearn_s``;
    RTE is :class:`Undefined` when ``unlearn_s == 0`` or the oracle time is unknown."""
    if not (math.isfinite(unlearn_s) and unlearn_s >= 0):
        raise BenchmarkError(f"unlearn_s must be a finite number >= 0, got {unlearn_s}")
    rte: float | Undefined
    if unlearn_s == 0:
        rte = Undefined("no unlearning time")
    elif oracle_s is None or not math.isfinite(oracle_s) or oracle_s <= 0:
        rte = Undefined(f"no retrain time recorded (got {oracle_s})")
    else:
        rte = oracle_s / unlearn_s
    return {"time/unlearn_s": float(unlearn_s), "time/rte": rte}


def _timing(key: str) -> Any:
    def fn(ctx: MetricContext) -> float | Undefined:
        v = (ctx.timings or {}).get(key)
        return Undefined(f"{key} was not measured") if v is None else float(v)

    return fn


@register_metric("time/unlearn_s", "lower", requires=("timings",), title="time_s", order=50, progress=True)
def unlearn_seconds(ctx: MetricContext) -> float | Undefined:
    """Wall seconds of the unlearning phase alone (evaluation and attacks excluded; CUDA synchronised)."""
    return _timing("unlearn_s")(ctx)


@register_metric("time/rte", "higher", requires=("timings",))
def rte(ctx: MetricContext) -> float | Undefined:
    """RTE = retrain seconds / unlearning seconds (speed-up over retraining)."""
    t = ctx.timings or {}
    return time_metrics(float(t.get("unlearn_s") or 0.0), t.get("oracle_train_s"))["time/rte"]


for _key, _doc in {"eval_s": "Wall seconds of the one inference pass over D, D_val and D_test.",
                   "attack_s": "Wall seconds of the relearning attacks (all attackers).",
                   "cell_s": "Wall seconds of the cell before its metrics (unlearning, inference, attacks)."}.items():
    register_metric(f"time/{_key}", "info", requires=("timings",), doc=_doc)(_timing(_key))
