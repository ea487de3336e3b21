"""Membership-inference metrics over cached outputs: SalUn's MIA-efficacy, a loss attack, RMIA.

All three read per-example outputs only (no model, no inference). Every sample
they draw comes from ``ctx.rng(<metric key>)``, so a value depends on the seed and
the data, not on which other metrics ran first.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold
from sklearn.svm import SVC

from benchmark.errors import BenchmarkError
from benchmark.metrics.core import MetricContext, register_metric
from benchmark.metrics.outputs import ModelOutputs, SplitOutputs
from benchmark.metrics.values import Undefined

RMIA_NEEDS_REFERENCES = (
    "needs at least 2 seeds: reference models are the retrain oracles of the other seeds"
)


def balanced_sample(labels: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of a class-balanced sample of size ``n`` drawn without replacement.

    Every class present gets ``n // k`` examples (k = number of classes present);
    a class with fewer examples gives all it has and the shortfall is spread over
    the others (water-filling); the last few are given to randomly chosen classes
    with examples to spare. The result is sorted.

    Args:
        labels: int [N] class of each example.
        n: Sample size, 0 <= n <= N.
        rng: Source of randomness.
    """
    labels = np.asarray(labels)
    if not 0 <= n <= labels.shape[0]:
        raise BenchmarkError(f"cannot draw {n} of {labels.shape[0]} examples")
    classes, counts = np.unique(labels, return_counts=True)
    quota = np.zeros(len(classes), dtype=np.int64)
    remaining = n
    order = np.argsort(counts, kind="stable")  # smallest classes first
    for i, c in enumerate(order):
        quota[c] = min(counts[c], remaining // (len(classes) - i))
        remaining -= quota[c]
    while remaining > 0:  # fewer than k left over from the integer division
        spare = np.flatnonzero(quota < counts)
        for c in rng.permutation(spare)[:remaining]:
            quota[c] += 1
            remaining -= 1
    picked = [
        rng.choice(np.flatnonzero(labels == cls), size=q, replace=False)
        for cls, q in zip(classes, quota, strict=True)
        if q
    ]
    return np.sort(np.concatenate(picked)) if picked else np.zeros(0, dtype=np.int64)


def stratified_sample(labels: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of a sample of size ``n``, without replacement, that keeps the class proportions.

    Class c (with N_c of the N examples) gets ``floor(n * N_c / N)`` examples; the
    few left over go one each to the classes with the largest remainders (ties in
    random order). ``n == N`` gives every index. The result is sorted.

    Args:
        labels: int [N] class of each example.
        n: Sample size, 0 <= n <= N.
        rng: Source of randomness.
    """
    labels = np.asarray(labels)
    total = labels.shape[0]
    if not 0 <= n <= total:
        raise BenchmarkError(f"cannot draw {n} of {total} examples")
    if n == total:
        return np.arange(total, dtype=np.int64)
    classes, counts = np.unique(labels, return_counts=True)
    exact = counts * n
    quota = exact // total
    tie_break = rng.permutation(len(classes))
    by_remainder = np.lexsort((tie_break, -(exact % total)))  # largest remainder first
    quota[by_remainder[: n - int(quota.sum())]] += 1
    picked = [
        rng.choice(np.flatnonzero(labels == cls), size=q, replace=False)
        for cls, q in zip(classes, quota, strict=True)
        if q
    ]
    return np.sort(np.concatenate(picked)) if picked else np.zeros(0, dtype=np.int64)


def svc_mia_efficacy(
    shadow_member_feat: np.ndarray, shadow_nonmember_feat: np.ndarray, target_feat: np.ndarray
) -> float:
    """Percent of target examples that an RBF SVC fit on the shadow set calls non-member.

    The attack of SalUn/l1-sparse (``SVC_fit_predict`` with ``target_train=None``):
    fit ``SVC(C=3, gamma="auto", kernel="rbf")`` on the 1-D features, label 1 for
    shadow members and 0 for shadow non-members, predict on the targets.
    """
    x = np.concatenate([shadow_member_feat, shadow_nonmember_feat]).astype(np.float64)
    y = np.concatenate([np.ones(len(shadow_member_feat)), np.zeros(len(shadow_nonmember_feat))])
    clf = SVC(C=3.0, gamma="auto", kernel="rbf").fit(x.reshape(-1, 1), y)
    # Each distinct feature value is predicted once: the same predictions, fewer kernel rows.
    values, inverse = np.unique(np.asarray(target_feat, dtype=np.float64), return_inverse=True)
    pred = clf.predict(values.reshape(-1, 1))[inverse.reshape(-1)]
    return 100.0 * float(np.mean(pred == 0))


def _nonfinite(so: SplitOutputs, split: str) -> Undefined | None:
    if so.n_nonfinite:
        return Undefined(f"{so.n_nonfinite} of {so.n} {split} examples have NaN logits")
    return None


def _efficacy(ctx: MetricContext) -> tuple[float, int] | Undefined:
    splits = {s: ctx.split(s) for s in ("forget", "retain", "test")}
    for so in splits.values():
        if isinstance(so, Undefined):
            return so
    forget, retain, test = splits["forget"], splits["retain"], splits["test"]
    if forget.n == 0:
        return Undefined("the forget set is empty: nothing to attack")
    n = min(retain.n, test.n, ctx.mia_shadow_max)
    if n == 0:
        empty = "retain" if retain.n == 0 else "test"
        return Undefined(f"the {empty} split is empty, so the shadow set has a single class")
    for split, so in splits.items():
        bad = _nonfinite(so, split)
        if bad is not None:
            return bad
    members = balanced_sample(retain.labels, n, ctx.rng("eval/mia/efficacy/members"))
    nonmembers = stratified_sample(test.labels, n, ctx.rng("eval/mia/efficacy/nonmembers"))
    value = svc_mia_efficacy(
        retain.true_prob[members], test.true_prob[nonmembers], forget.true_prob
    )
    return value, n


@register_metric("eval/mia/efficacy", "oracle", title="MIA-eff", order=20)
def mia_efficacy(ctx: MetricContext) -> float | Undefined:
    """MIA-efficacy (SalUn-compatible): percent of D_f that a confidence attack calls non-member.

    Feature: softmax probability of the true label. Both sides of the shadow set
    have n = min(|D_r|, |D_test|, mia_shadow_max) examples (``eval/mia/shadow_n``),
    as many as the data allow under the cap (10,000 by default: all of CIFAR-10's
    test set). Shadow members (label 1): a class-balanced sample of D_r; shadow
    non-members (label 0): all of D_test when n = |D_test|, else a sample that
    keeps D_test's class proportions. An ``SVC(C=3, gamma="auto", kernel="rbf")``
    fit on the shadow set predicts on D_f; the value is 100 * share of D_f
    predicted non-member. Higher means more forgetting; the oracle's value is the
    target. Undefined for an empty D_f, or when D_r or D_test is empty (one
    shadow class only).

    Departures from SalUn's code (``main_forget.py``: the first |D_test| examples
    of D_r, or all of a smaller D_r, against all of D_test): the members are a
    seeded class-balanced sample rather than the first ones, both sides always
    have n examples, and each side is capped at ``mia_shadow_max``.
    """
    result = ctx.cached("mia_efficacy", lambda: _efficacy(ctx))
    return result if isinstance(result, Undefined) else result[0]


@register_metric("eval/mia/shadow_n", "info")
def mia_shadow_n(ctx: MetricContext) -> int | Undefined:
    """Examples per side of the MIA-efficacy shadow set: min(|D_r|, |D_test|, mia_shadow_max)."""
    result = ctx.cached("mia_efficacy", lambda: _efficacy(ctx))
    return result if isinstance(result, Undefined) else result[1]


def loss_mia_accuracy(
    member_loss: np.ndarray, nonmember_loss: np.ndarray, rng: np.random.Generator
) -> float | Undefined:
    """CV accuracy (percent) of a logistic regression telling members from non-members by loss.

    The larger side is subsampled (without replacement) to the smaller side's size
    n, so chance is exactly 50. Splits: ``StratifiedKFold(min(10, n), shuffle=True)``.
    Undefined when n < 2 (no cross-validation possible).
    """
    n = min(len(member_loss), len(nonmember_loss))
    if n < 2:
        return Undefined(
            f"needs at least 2 members and 2 non-members, got {len(member_loss)} and "
            f"{len(nonmember_loss)}"
        )
    if len(member_loss) > n:
        member_loss = member_loss[np.sort(rng.choice(len(member_loss), n, replace=False))]
    if len(nonmember_loss) > n:
        nonmember_loss = nonmember_loss[np.sort(rng.choice(len(nonmember_loss), n, replace=False))]
    x = np.concatenate([member_loss, nonmember_loss]).astype(np.float64).reshape(-1, 1)
    y = np.concatenate([np.ones(n, dtype=np.int64), np.zeros(n, dtype=np.int64)])
    cv = StratifiedKFold(n_splits=min(10, n), shuffle=True, random_state=int(rng.integers(2**31)))
    scores = []
    for tr, te in cv.split(x, y):
        w, b = logistic_regression_1d(x[tr, 0], y[tr])
        scores.append(np.mean(((w * x[te, 0] + b) > 0).astype(np.int64) == y[te]))
    return 100.0 * float(np.mean(scores))


def logistic_regression_1d(x: np.ndarray, y: np.ndarray, C: float = 1.0, iters: int = 50) -> tuple[float, float]:
    """sklearn's default ``LogisticRegression`` (L2 on the weight only, C=1) for one feature,
    by Newton's method: the same optimum, ~100x faster than a sklearn fit on tiny folds.

    Minimises ``w**2 / (2C) + sum(log(1 + exp(-s_i (w x_i + b))))`` with s_i = +-1.
    """
    w = b = 0.0
    for _ in range(iters):
        z = w * x + b
        p = 0.5 * (1.0 + np.tanh(0.5 * z))  # sigmoid, overflow-free
        r = p - y
        g = np.array([np.dot(r, x) + w / C, r.sum()])
        h = p * (1.0 - p)
        hess = np.array([[np.dot(h, x * x) + 1.0 / C, np.dot(h, x)], [np.dot(h, x), h.sum() + 1e-12]])
        step = np.linalg.solve(hess, g)
        w, b = w - step[0], b - step[1]
        if np.abs(step).max() < 1e-10:
            break
    return float(w), float(b)


@register_metric("eval/mia/loss_acc", "oracle", title="Loss-MIA", order=21)
def loss_mia(ctx: MetricContext) -> float | Undefined:
    """Loss-MIA: 10-fold CV accuracy (percent) of logistic regression on loss, D_f vs D_test.

    Members: D_f; non-members: an equal-size seeded sample of D_test (if D_test
    is smaller, D_f is subsampled to |D_test|). Fewer folds when fewer than 10
    examples per side. 50 means indistinguishable (the NeurIPS 2023 unlearning
    challenge's population attack); the oracle's value is the target.
    """
    forget, test = ctx.split("forget"), ctx.split("test")
    for so, split in ((forget, "forget"), (test, "test")):
        if isinstance(so, Undefined):
            return so
        if not np.isfinite(so.loss).all():
            return Undefined(f"{split} losses contain non-finite values")
    return loss_mia_accuracy(forget.loss, test.loss, ctx.rng("eval/mia/loss_acc"))


def rmia_scores(
    target_x: np.ndarray,
    refs_x: np.ndarray,
    target_z: np.ndarray,
    refs_z: np.ndarray,
    *,
    offline_a: float = 0.3,
    gamma: float = 1.0,
    self_in_z: np.ndarray | None = None,
) -> np.ndarray:
    """RMIA membership scores, offline variant (Zarifzadeh et al., ICML 2024).

    With p_m(x) the softmax probability of x's true label under model m, and K
    reference models that were all trained without x and without any z:

        Pr(x)    = ((1 + a) * mean_k p_k(x) + (1 - a)) / 2
        r(x)     = p_target(x) / Pr(x)
        score(x) = share of population points z (z != x) with r(x) > gamma * r(z)

    ``Pr(x)`` is the paper's linear approximation of the average over IN and OUT
    models from OUT models only (Pr_IN ~ a * Pr_OUT + 1 - a); it is applied to x
    and z alike, as in the authors' Privacy Meter code.

    Args:
        target_x: [N] target model's true-label probabilities on the candidates.
        refs_x: [K, N] the reference models' probabilities on the candidates.
        target_z: [M] target model's probabilities on the population.
        refs_z: [K, M] the reference models' probabilities on the population.
        offline_a: The coefficient a in [0, 1].
        gamma: The likelihood-ratio threshold (> 0).
        self_in_z: Optional int [N], the position of each candidate in the
            population (-1 if absent); a candidate is never compared with itself.

    Returns:
        float64 [N] scores in [0, 1]; larger means more likely a member.
    """
    refs_x, refs_z = np.atleast_2d(refs_x), np.atleast_2d(refs_z)
    tiny = np.finfo(np.float64).tiny

    def ratio(target: np.ndarray, refs: np.ndarray) -> np.ndarray:
        pr = ((1.0 + offline_a) * refs.astype(np.float64).mean(axis=0) + (1.0 - offline_a)) / 2.0
        return target.astype(np.float64) / np.maximum(pr, tiny)

    r_x, r_z = ratio(target_x, refs_x), ratio(target_z, refs_z)
    thresholds = np.sort(gamma * r_z)
    # r(x) > gamma * r(z)  <=>  gamma * r(z) < r(x): count with one sorted pass
    counts = np.searchsorted(thresholds, r_x, side="left").astype(np.float64)
    denom = np.full(len(r_x), float(len(r_z)))
    if self_in_z is not None:
        has_self = np.asarray(self_in_z) >= 0
        idx = np.asarray(self_in_z)[has_self]
        counts[has_self] -= (gamma * r_z[idx] < r_x[has_self]).astype(np.float64)
        denom[has_self] -= 1.0
    return counts / denom


def _rmia(ctx: MetricContext) -> float | Undefined:
    if len(ctx.reference_outputs) < 1:
        return Undefined(ctx.rmia_undefined or RMIA_NEEDS_REFERENCES)
    models: list[ModelOutputs] = [ctx.outputs, *ctx.reference_outputs]
    for split in ("forget", "test"):
        so = ctx.split(split)
        if isinstance(so, Undefined):
            return so
        if so.n == 0:
            return Undefined(f"the {split} split is empty")
        for k, ref in enumerate(ctx.reference_outputs):
            r = ref.get(split)
            if r is None or r.n != so.n or not np.array_equal(r.labels, so.labels):
                got = "missing" if r is None else f"{r.n} examples"
                return Undefined(
                    f"reference model {k}: {split} split ({got}) does not match the target's "
                    f"{so.n} examples in the same order"
                )
    for m in models:
        for split in ("forget", "test"):
            if m[split].n_nonfinite:
                return Undefined(f"NaN logits on the {split} split")
    # Population: D_test, plus D_val where every model has it (no model trained on either).
    pop_splits = ["test"]
    val = ctx.outputs.get("val")
    if (
        val is not None
        and val.n
        and not val.n_nonfinite
        and all(
            ref.get("val") is not None
            and np.array_equal(ref["val"].labels, val.labels)
            and not ref["val"].n_nonfinite
            for ref in ctx.reference_outputs
        )
    ):
        pop_splits.append("val")

    def probs(split_names: list[str]) -> tuple[np.ndarray, np.ndarray]:
        per_model = [np.concatenate([m[s].true_prob for s in split_names]) for m in models]
        return per_model[0], np.stack(per_model[1:])

    tx, rx = probs(["forget", "test"])
    tz, rz = probs(pop_splits)
    if len(tz) < 2:
        return Undefined("the population (test + val) needs at least 2 examples")
    n_f, n_t = ctx.outputs["forget"].n, ctx.outputs["test"].n
    self_in_z = np.concatenate([np.full(n_f, -1), np.arange(n_t)])  # test comes first in z
    scores = rmia_scores(
        tx, rx, tz, rz, offline_a=ctx.rmia_offline_a, gamma=ctx.rmia_gamma, self_in_z=self_in_z
    )
    y = np.concatenate([np.ones(n_f), np.zeros(n_t)])
    return float(roc_auc_score(y, scores))


@register_metric("eval/mia/rmia_auc", "oracle", requires=("outputs", "references"), title="RMIA-AUC", order=22)
def rmia_auc(ctx: MetricContext) -> float | Undefined:
    """RMIA AUC (offline, Zarifzadeh et al. 2024): D_f members vs D_test non-members, in [0, 1].

    Reference models: the retrain oracles of the other seeds (never trained on
    D_f, D_test or D_val). p_m(x) = softmax probability of the true label under
    model m; Pr(x) = ((1 + a) * mean_k p_k(x) + 1 - a) / 2 with a = 0.3;
    r(x) = p_target(x) / Pr(x); score(x) = share of population points z != x with
    r(x) > gamma * r(z), gamma = 1; population Z = D_test plus D_val when every
    model has D_val outputs. Value: ROC AUC of the score (``roc_auc_score``).
    0.5 means no membership signal; the oracle's own value is the target.
    Undefined without reference models.
    """
    return _rmia(ctx)
