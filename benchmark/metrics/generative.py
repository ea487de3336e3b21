"""Generator metrics (task=generate, docs/protocol.md s.8), from one fixed-seed batch of samples.

A generator has no per-example classifier outputs; what it has is samples. The runner
samples ``generate.samples_per_class`` images of every class (the same starting noise for
every model of a group) and the suite's evaluator classifier scores them
(:mod:`benchmark.generative.evaluation`); these metrics read that
:class:`~benchmark.generative.evaluation.SampleEval` (requirement ``samples``). The relearning
metrics (``relearn/{attacker}/...``), cost and weight distances are the classifiers' own.
"""

from __future__ import annotations

from benchmark.metrics.core import MetricContext, register_metric
from benchmark.metrics.values import Undefined

_REQ = ("samples",)
_GAP = ("samples", "oracle")


@register_metric("gen/forget/acc", "oracle", requires=_REQ, title="FgtAcc", order=1, progress=True)
def forget_acc(ctx: MetricContext) -> float:
    """Forgetting: the evaluator's accuracy (%) on samples conditioned on the forgotten class(es); the
    oracle's value (a generator that never saw the class) is the target, the original's ~100."""
    return ctx.samples.forget_acc()


@register_metric("gen/remain/acc", "higher", requires=_REQ, title="RemAcc", order=2, progress=True)
def remain_acc(ctx: MetricContext) -> float:
    """Quality on the remaining classes: the evaluator's accuracy (%) on their conditional samples,
    the mean over those classes."""
    return ctx.samples.remain_acc()


@register_metric("gen/remain/acc_min", "higher", requires=_REQ, title="RemAccMin", order=3)
def remain_acc_min(ctx: MetricContext) -> float:
    """The worst remaining class's evaluator accuracy (%) on its samples (collateral damage to one class)."""
    s = ctx.samples
    return min(s.class_acc[c] for c in s.remain_classes)


@register_metric("gen/remain/fid", "lower", requires=_REQ, title="FID", digits=2, order=4, progress=True)
def fid(ctx: MetricContext) -> float | Undefined:
    """FID (torchmetrics) of the remaining classes' samples against the held-out real test images of those
    classes, on the evaluator's penultimate features (no Inception weights offline; generate.features=inception
    uses Inception-v3 where its weights are available). Comparable only within one evaluator."""
    v = ctx.samples.fid
    return Undefined("FID was not computed") if v is None else v


@register_metric("gen/remain/kid", "lower", requires=_REQ, title="KID", digits=1, order=5)
def kid(ctx: MetricContext) -> float | Undefined:
    """KID (torchmetrics, polynomial kernel, mean over random subsets with a fixed seed) of the
    remaining classes' samples against their held-out real test images, on the same features as FID (unnormalised
    ReLU features: its scale is the evaluator's, so values compare only within one evaluator)."""
    v = ctx.samples.kid
    return Undefined("KID was not computed") if v is None else v


def _gap(key: str):
    def fn(ctx: MetricContext) -> float | Undefined:
        mine, oracle = ctx.values.get(key), (ctx.oracle_values or {}).get(key)
        if mine is None or oracle is None or isinstance(mine, Undefined) or isinstance(oracle, Undefined):
            return Undefined(f"{key} is undefined for the model or the oracle")
        return abs(float(mine) - float(oracle))

    return fn


for _name, _key in (("forget_acc", "gen/forget/acc"), ("remain_acc", "gen/remain/acc")):
    register_metric(f"gen/gap/{_name}", "lower", requires=_GAP,
                    doc=f"|{_key}(theta_u) - {_key}(theta_r)|, percentage points.")(_gap(_key))


@register_metric("gen/gap/avg", "lower", requires=_GAP, title="GenGap", digits=2, order=6, progress=True)
def gen_avg_gap(ctx: MetricContext) -> float | Undefined:
    """Generative Avg Gap: mean of the forget-accuracy and remaining-accuracy gaps to the oracle (points)."""
    gaps = [_gap(k)(ctx) for k in ("gen/forget/acc", "gen/remain/acc")]  # not ctx.values: computed in any order
    if any(g is None or isinstance(g, Undefined) for g in gaps):
        return Undefined("a gap to the oracle is undefined")
    return sum(float(g) for g in gaps) / len(gaps)
