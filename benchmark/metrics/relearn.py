"""Relearning metrics (docs/protocol.md, "The relearning attack and RCD"), one set per attacker.

Each reads the cell's relearning curves for one attacker (one per attack repeat), the
oracle's curves for the same attacker and the group's levels (L_o, L_r, A_o, A_r); the
curves come from :mod:`benchmark.callbacks.relearn`, which runs the attack. Two criteria
(protocol 1.1): accuracy (``rcd_acc``, the headline: a prediction-level quantity that
rescaling the logits cannot move) and loss (``rcd``, the paper's companion).
"""

from __future__ import annotations

import math
import statistics

from benchmark.callbacks.relearn import Delay, mean_delay, recovery_gap
from benchmark.metrics.core import MetricContext, register_metric
from benchmark.metrics.values import Undefined

_REQ = ("curves",)
DIST_CAP = 5.0  # |log2 RCD| is capped at 5 (a factor 32 either way; RCD 0, the original's, is at the cap)


def _delay(ctx: MetricContext, attacker: str, criterion: str, oracle: bool = False) -> Delay:
    curves = (ctx.oracle_curves if oracle else ctx.curves)[attacker]
    return ctx.cached(f"T/{attacker}/{criterion}/{oracle}", lambda: mean_delay(curves, ctx.levels, criterion))


def _why_undefined(ctx: MetricContext, attacker: str, criterion: str) -> str | None:
    why = ctx.levels.acc_undefined_reason if criterion == "acc" else ctx.levels.undefined_reason
    if why:
        return why
    if attacker not in (ctx.oracle_curves or {}):
        return f"no oracle curve for attacker {attacker!r}"
    t_r = _delay(ctx, attacker, criterion, oracle=True)
    if t_r.censored:
        return (f"the oracle's own T ({'accuracy' if criterion == 'acc' else 'loss'} criterion) is censored at "
                f"the attack budget, so a ratio to it would be a ratio to a bound; raise attack.cap_epochs")
    if t_r.mean == 0:
        return "the oracle is already at the target level at step 0"
    return None


def _rcd(ctx: MetricContext, attacker: str, criterion: str) -> float | Undefined:
    why = _why_undefined(ctx, attacker, criterion)
    if why:
        return Undefined(why)
    return _delay(ctx, attacker, criterion).mean / _delay(ctx, attacker, criterion, oracle=True).mean


def _spread(ctx: MetricContext, attacker: str, criterion: str) -> float | Undefined:
    why = _why_undefined(ctx, attacker, criterion)
    if why:
        return Undefined(why)
    d, t_r = _delay(ctx, attacker, criterion), _delay(ctx, attacker, criterion, oracle=True).mean
    if len(d.values) < 2:
        return Undefined("one attack repeat: no spread (attack.repeats=1)")
    return statistics.stdev(t / t_r for t in d.values)


def _dist(ctx: MetricContext, attacker: str, criterion: str) -> float | Undefined:
    r = _rcd(ctx, attacker, criterion)
    if isinstance(r, Undefined):
        return r
    return DIST_CAP if r <= 0 else min(DIST_CAP, abs(math.log2(r)))


@register_metric("relearn/{attacker}/rcd_acc", "higher", requires=_REQ, title="RCD-{attacker}", digits=2, order=30,
                 progress=True)
def rcd_acc(ctx: MetricContext, attacker: str) -> float | Undefined:
    """RCD_acc = T_acc(theta_u) / T_acc(theta_r), the headline: attack steps until forget accuracy is back to
    A* = A_o - delta_acc (A_o - A_r), relative to the oracle's (each T a mean over attack repeats; 0 = the
    original, 1 = as a model that never saw D_f, above 1 = harder to relearn than never having seen it)."""
    return _rcd(ctx, attacker, "acc")


@register_metric("relearn/{attacker}/rcd", "higher", requires=_REQ, title="RCDloss-{attacker}", digits=2, order=32)
def rcd(ctx: MetricContext, attacker: str) -> float | Undefined:
    """RCD (loss criterion, the paper's; a companion since protocol 1.1): T(theta_u) / T(theta_r), attack steps
    until the forget loss is back to L* = L_o + delta (L_r - L_o), relative to the oracle's. Rescaling the
    logits moves it; see rcd_acc."""
    return _rcd(ctx, attacker, "loss")


@register_metric("relearn/{attacker}/rcd_acc_dist", "lower", requires=_REQ)
def rcd_acc_dist(ctx: MetricContext, attacker: str) -> float | Undefined:
    """|log2 RCD_acc|, capped at 5: the distance of the headline RCD from the oracle's 1 (the two-sided
    reading: an RCD far above 1 is a detectable trace of unlearning, as one far below 1 is residual
    knowledge; 0 = relearns as the oracle does)."""
    return _dist(ctx, attacker, "acc")


@register_metric("relearn/{attacker}/rcd_dist", "lower", requires=_REQ)
def rcd_dist(ctx: MetricContext, attacker: str) -> float | Undefined:
    """|log2 RCD| (loss criterion), capped at 5: the two-sided reading of the companion RCD."""
    return _dist(ctx, attacker, "loss")


@register_metric("relearn/{attacker}/rcd_acc_std", "info", requires=_REQ)
def rcd_acc_std(ctx: MetricContext, attacker: str) -> float | Undefined:
    """Standard deviation over attack repeats of T_acc(theta_u, repeat) / T_acc(theta_r): how much one
    attack seed's data order moves the headline RCD."""
    return _spread(ctx, attacker, "acc")


@register_metric("relearn/{attacker}/rcd_std", "info", requires=_REQ)
def rcd_std(ctx: MetricContext, attacker: str) -> float | Undefined:
    """Standard deviation over attack repeats of T(theta_u, repeat) / T(theta_r) (loss criterion)."""
    return _spread(ctx, attacker, "loss")


@register_metric("relearn/{attacker}/steps_acc", "higher", requires=_REQ)
def steps_acc(ctx: MetricContext, attacker: str) -> float:
    """T_acc(theta_u): mean over repeats of the first evaluated attack step with forget accuracy >= A*
    (the budget where never)."""
    return _delay(ctx, attacker, "acc").mean


@register_metric("relearn/{attacker}/steps", "higher", requires=_REQ)
def steps(ctx: MetricContext, attacker: str) -> float:
    """T(theta_u): mean over repeats of the first evaluated attack step with forget loss <= L* (the budget
    where never)."""
    return _delay(ctx, attacker, "loss").mean


@register_metric("relearn/{attacker}/censored_acc", "info", requires=_REQ)
def censored_acc(ctx: MetricContext, attacker: str) -> float:
    """1 if some repeat never reached A* within the attack budget (T_acc and RCD_acc are then lower bounds)."""
    return float(_delay(ctx, attacker, "acc").censored)


@register_metric("relearn/{attacker}/censored", "info", requires=_REQ)
def censored(ctx: MetricContext, attacker: str) -> float:
    """1 if some repeat never reached L* within the attack budget (T and RCD are then lower bounds)."""
    return float(_delay(ctx, attacker, "loss").censored)


@register_metric("relearn/{attacker}/oracle_steps_acc", "info", requires=_REQ)
def oracle_steps_acc(ctx: MetricContext, attacker: str) -> float | Undefined:
    """T_acc(theta_r): the oracle's mean relearning steps to A* (the RCD_acc denominator)."""
    if attacker not in (ctx.oracle_curves or {}):
        return Undefined(f"no oracle curve for attacker {attacker!r}")
    return _delay(ctx, attacker, "acc", oracle=True).mean


@register_metric("relearn/{attacker}/oracle_steps", "info", requires=_REQ)
def oracle_steps(ctx: MetricContext, attacker: str) -> float | Undefined:
    """T(theta_r): the oracle's mean relearning steps to L* (the RCD denominator)."""
    if attacker not in (ctx.oracle_curves or {}):
        return Undefined(f"no oracle curve for attacker {attacker!r}")
    return _delay(ctx, attacker, "loss", oracle=True).mean


@register_metric("relearn/{attacker}/oracle_censored_acc", "info", requires=_REQ)
def oracle_censored_acc(ctx: MetricContext, attacker: str) -> float | Undefined:
    """1 if the oracle never reached A* within the attack budget in some repeat, else 0."""
    if attacker not in (ctx.oracle_curves or {}):
        return Undefined(f"no oracle curve for attacker {attacker!r}")
    return float(_delay(ctx, attacker, "acc", oracle=True).censored)


@register_metric("relearn/{attacker}/oracle_censored", "info", requires=_REQ)
def oracle_censored(ctx: MetricContext, attacker: str) -> float | Undefined:
    """1 if the oracle never reached L* within the attack budget in some repeat, else 0."""
    if attacker not in (ctx.oracle_curves or {}):
        return Undefined(f"no oracle curve for attacker {attacker!r}")
    return float(_delay(ctx, attacker, "loss", oracle=True).censored)


@register_metric("relearn/{attacker}/budget", "info", requires=_REQ)
def budget(ctx: MetricContext, attacker: str) -> float:
    """The attack budget in steps (attack.budget=oracle: attack.budget_factor x the oracle's T)."""
    return float(ctx.curves[attacker][0].max_steps)


@register_metric("relearn/{attacker}/weight_dist_at_T", "info", requires=_REQ)
def weight_dist_at_t(ctx: MetricContext, attacker: str) -> float:
    """||theta_T - theta_o|| / ||theta_o|| at the attack step T_acc, mean over repeats: how far relearning
    had to travel."""
    d = _delay(ctx, attacker, "acc")
    vals = []
    for curve, t in zip(ctx.curves[attacker], d.values, strict=True):
        vals.append(curve.weight_dist[curve.steps.index(t) if t in curve.steps else len(curve.steps) - 1])
    return float(sum(vals) / len(vals))


@register_metric("relearn/{attacker}/recovery_gap", "higher", requires=_REQ)
def recovery(ctx: MetricContext, attacker: str) -> float:
    """Mean over evaluated attack steps (and repeats) of clip((L_t - L*) / (L_r - L*), 0, 1): 0 = recovered at
    once, 1 = never got below the oracle's level."""
    runs = ctx.curves[attacker]
    if any(c.truncated for c in runs):  # a mean over fewer steps would not compare with full curves
        return Undefined("the attack stopped early (attack.stop_after_tail); recovery_gap needs full curves "
                         "(attack.stop_after_tail=null)")
    return sum(recovery_gap(c, ctx.levels) for c in runs) / len(runs)
