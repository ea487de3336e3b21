"""Relearning metrics (docs/protocol.md, "The relearning attack and RCD"), one set per attacker.

Each reads the cell's relearning curve for one attacker, the oracle's curve for the
same attacker and the group's levels (L_o, L_r, delta); the curves come from
:mod:`benchmark.callbacks.relearn`, which runs the attack.
"""

from __future__ import annotations

from benchmark.callbacks.relearn import convergence_step, recovery_gap
from benchmark.metrics.core import MetricContext, register_metric
from benchmark.metrics.values import Undefined

_REQ = ("curves",)


def _t(ctx: MetricContext, attacker: str, oracle: bool = False) -> tuple[int, bool]:
    curve = (ctx.oracle_curves if oracle else ctx.curves)[attacker]
    return ctx.cached(f"T/{attacker}/{oracle}", lambda: convergence_step(curve, ctx.levels))


@register_metric("relearn/{attacker}/rcd", "higher", requires=_REQ, title="RCD-{attacker}", digits=2, order=30,
                 progress=True)
def rcd(ctx: MetricContext, attacker: str) -> float | Undefined:
    """RCD = T(theta_u) / T(theta_r): relearning steps to L* relative to the oracle's (0 = the original,
    1 = as a model that never saw D_f, above 1 = harder to relearn than never having seen it)."""
    why = ctx.levels.undefined_reason
    if why:
        return Undefined(why)
    if attacker not in (ctx.oracle_curves or {}):
        return Undefined(f"no oracle curve for attacker {attacker!r}")
    t_r, _ = _t(ctx, attacker, oracle=True)
    if t_r == 0:
        return Undefined("the oracle is already at the target level at step 0")
    return _t(ctx, attacker)[0] / t_r


@register_metric("relearn/{attacker}/steps", "higher", requires=_REQ)
def steps(ctx: MetricContext, attacker: str) -> float:
    """T(theta_u): the first evaluated attack step at which the forget loss is <= L* (the budget if never)."""
    return float(_t(ctx, attacker)[0])


@register_metric("relearn/{attacker}/censored", "info", requires=_REQ)
def censored(ctx: MetricContext, attacker: str) -> float:
    """1 if the model never reached L* within the attack budget (T is then a lower bound), else 0."""
    return float(_t(ctx, attacker)[1])


@register_metric("relearn/{attacker}/oracle_steps", "info", requires=_REQ)
def oracle_steps(ctx: MetricContext, attacker: str) -> float | Undefined:
    """T(theta_r): the oracle's relearning steps to L* (the RCD denominator)."""
    if attacker not in (ctx.oracle_curves or {}):
        return Undefined(f"no oracle curve for attacker {attacker!r}")
    return float(_t(ctx, attacker, oracle=True)[0])


@register_metric("relearn/{attacker}/oracle_censored", "info", requires=_REQ)
def oracle_censored(ctx: MetricContext, attacker: str) -> float | Undefined:
    """1 if the oracle never reached L* within the attack budget, else 0."""
    if attacker not in (ctx.oracle_curves or {}):
        return Undefined(f"no oracle curve for attacker {attacker!r}")
    return float(_t(ctx, attacker, oracle=True)[1])


@register_metric("relearn/{attacker}/weight_dist_at_T", "info", requires=_REQ)
def weight_dist_at_t(ctx: MetricContext, attacker: str) -> float:
    """||theta_T - theta_o|| / ||theta_o|| at the attack step T: how far relearning had to travel."""
    curve = ctx.curves[attacker]
    t = _t(ctx, attacker)[0]
    return float(curve.weight_dist[curve.steps.index(t) if t in curve.steps else len(curve.steps) - 1])


@register_metric("relearn/{attacker}/recovery_gap", "higher", requires=_REQ)
def recovery(ctx: MetricContext, attacker: str) -> float:
    """Mean over evaluated attack steps of clip((L_t - L*) / (L_r - L*), 0, 1): 0 = recovered at once,
    1 = never got below the oracle's level."""
    return recovery_gap(ctx.curves[attacker], ctx.levels)
