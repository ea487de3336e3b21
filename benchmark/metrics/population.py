"""Forgetting quality against a population of oracles: the challenge's epsilon and a U-LiRA-style attack.

For one fixed forget set of M examples we hold K_u "unlearned" models (a method applied to K originals
trained with different seeds) and K_r oracles (retrained without the forget set). Each model gives, per
forget example, a logit-scaled confidence of the true label (:func:`logit_confidence`). The functions here
compare the two populations example by example:

* :func:`per_example_epsilon` / :func:`forgetting_quality` follow the evaluation of the NeurIPS 2023 Machine
  Unlearning Challenge (Triantafillou et al. 2024, arXiv 2406.09073, and its released metric code): an
  (epsilon, delta) estimate per example from the error rates of thresholded attacks, aggregated by a binned
  score in [0, 1].
* :func:`ulira` is a per-example likelihood-ratio attack after U-LiRA (Hayes et al., "Inexact unlearning
  needs more careful evaluations", SaTML 2025, arXiv 2403.01218).
* :func:`half_split` gives the oracle reference line (oracles against oracles).

The estimators are pure numpy/scipy and raise ``ValueError`` with a one-line reason on inputs they cannot
score. The ``pop/*`` metrics registered at the end read a context's ``population`` (the confidences of the
unlearned population and of the oracles on D_f and on a sample of D_r) and turn such a reason into an
undefined value.
"""

from __future__ import annotations

import numpy as np
from scipy.special import logsumexp

from benchmark.metrics.core import MetricContext, register_metric
from benchmark.metrics.values import Undefined

DELTA = 1e-5
"""The challenge's delta."""

ZERO_COUNT = 0.5
"""An error count of zero is replaced by this many errors before the rates enter the log ratios."""

SIGMA_FLOOR = 1e-2
"""Smallest standard deviation (in logit units) of a fitted U-LiRA Gaussian."""

MIN_ULIRA_MODELS = 4


def logit_confidence(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Logit-scaled confidence of the true label, ``log(p_y / (1 - p_y))`` under the softmax.

    Computed as ``logit_y - logsumexp(logits of the other classes)`` in float64, which equals
    ``log p_y - log(1 - p_y)`` exactly, never overflows for finite logits and is invariant to adding a
    constant to all logits of an example (it is not invariant to scaling them: temperature matters).

    Departure from the challenge code (LiRA's recipe): that code takes the softmax and then
    ``log(p_y + 1e-45) - log(1 - p_y + 1e-45)``, which saturates near +-103; this version does not.

    Args:
        logits: [..., N, C] logits, C >= 2 (leading axes, e.g. models, are kept).
        labels: [N] integer true labels in [0, C).

    Returns:
        [..., N] float64 confidences.
    """
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels)
    if z.ndim < 2 or z.shape[-1] < 2:
        raise ValueError(f"logits must be [..., N, C] with C >= 2, got shape {z.shape}")
    if y.ndim != 1 or y.shape[0] != z.shape[-2]:
        raise ValueError(f"labels must be [N] with N = {z.shape[-2]}, got shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer) or (
        y.size and (y.min() < 0 or y.max() >= z.shape[-1])
    ):
        raise ValueError(f"labels must be integers in [0, {z.shape[-1]})")
    if not np.isfinite(z).all():
        raise ValueError("logits must be finite")
    index = np.broadcast_to(y, z.shape[:-1])[..., None]
    true_logit = np.take_along_axis(z, index, axis=-1)[..., 0]
    others = z.copy()
    np.put_along_axis(others, index, -np.inf, axis=-1)
    return true_logit - logsumexp(others, axis=-1)


def _populations(unlearned: np.ndarray, oracle: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    u = np.asarray(unlearned, dtype=np.float64)
    r = np.asarray(oracle, dtype=np.float64)
    if u.ndim != 2 or r.ndim != 2 or u.shape[1] != r.shape[1]:
        raise ValueError(
            f"need unlearned [K_u, M] and oracle [K_r, M], got shapes {u.shape} and {r.shape}"
        )
    if not (np.isfinite(u).all() and np.isfinite(r).all()):
        raise ValueError("confidences must be finite")
    return u, r


def _log_ratio_epsilon(
    fpr: np.ndarray, fnr: np.ndarray, k_u: int, k_r: int, delta: float
) -> np.ndarray:
    """Elementwise ``max(log((1-delta-FPR)/FNR), log((1-delta-FNR)/FPR))`` with zero counts floored.

    FPR is a fraction of the K_r oracles, FNR of the K_u unlearned models; a zero rate becomes
    ``ZERO_COUNT / K``. A ratio whose numerator is <= 0 contributes -inf.
    """
    fpr = np.maximum(fpr, ZERO_COUNT / k_r)
    fnr = np.maximum(fnr, ZERO_COUNT / k_u)
    num_1 = 1.0 - delta - fpr
    num_2 = 1.0 - delta - fnr
    with np.errstate(divide="ignore", invalid="ignore"):
        e_1 = np.where(num_1 > 0, np.log(num_1) - np.log(fnr), -np.inf)
        e_2 = np.where(num_2 > 0, np.log(num_2) - np.log(fpr), -np.inf)
    return np.maximum(e_1, e_2)


def epsilon_cap(k_u: int, k_r: int, delta: float = DELTA) -> float:
    """The largest epsilon :func:`per_example_epsilon` can report for populations of K_u and K_r models.

    It is what disjoint distributions give: a threshold with no errors, whose zero counts are floored at
    half an error, i.e. ``max(log((1-delta-1/(2K_r)) * 2K_u), log((1-delta-1/(2K_u)) * 2K_r))``, about
    ``log(2K - 1)`` for K_u = K_r = K (6.93 for K = 512). Clipped below at 0. The challenge instead reports
    infinity for disjoint distributions (clipped to 50) and sizes its score bins by ``ceil(log(K - 1))``.

    Args:
        k_u: Number of unlearned models, >= 1.
        k_r: Number of oracles, >= 1.
        delta: The delta of (epsilon, delta), in [0, 1).
    """
    if k_u < 1 or k_r < 1:
        raise ValueError(f"population sizes must be >= 1, got K_u={k_u}, K_r={k_r}")
    if not 0.0 <= delta < 1.0:
        raise ValueError(f"delta must be in [0, 1), got {delta}")
    zero = np.zeros(1)
    return float(max(0.0, _log_ratio_epsilon(zero, zero, k_u, k_r, delta)[0]))


def per_example_epsilon(
    unlearned: np.ndarray, oracle: np.ndarray, delta: float = DELTA
) -> np.ndarray:
    """Per-example epsilon estimate of how well thresholded attacks tell the two populations apart.

    For each example the K_u + K_r values are pooled and sorted; every split between two distinct
    values (plus the two ends) is a threshold, and both orientations are tried (values above the
    threshold called "unlearned", or values below). For each, with the oracles as negatives,
    FPR = oracles called unlearned / K_r and FNR = unlearned models called oracle / K_u, and

        eps(t) = max(log((1 - delta - FPR) / FNR), log((1 - delta - FNR) / FPR)),

    a zero error count being replaced by half an error (rate 1/(2K)). The estimate is the max over
    thresholds, clipped below at 0, so it lies in ``[0, epsilon_cap(K_u, K_r, delta)]``: identical
    populations give 0, disjoint ones exactly the cap.

    Departures from the challenge's released metric code: (1) thresholds are every split of the pooled
    values in both orientations, not a grid of 100 per logit unit oriented by the larger median; (2) its
    second, double-threshold (interval) attack and its shortcut "range ratio < 1% -> cap" are omitted;
    (3) it discards thresholds with exactly one zero rate and returns infinity (clipped to 50) when both are
    zero, whereas here zero counts are floored at 1/2 so every threshold counts and the value stays finite.

    Args:
        unlearned: [K_u, M] confidences of the unlearned models.
        oracle: [K_r, M] confidences of the oracles.
        delta: The delta of (epsilon, delta), in [0, 1).

    Returns:
        [M] float64 epsilons >= 0.

    Raises:
        ValueError: Bad shapes, non-finite values, or populations too small for a positive cap
            (one model each; 2 and 2 give a cap of log(3)).
    """
    u, r = _populations(unlearned, oracle)
    k_u, k_r = u.shape[0], r.shape[0]
    if epsilon_cap(k_u, k_r, delta) <= 0.0:
        raise ValueError(
            f"K_u={k_u} and K_r={k_r} models cannot give a positive epsilon; use >= 2 of each"
        )
    n = k_u + k_r
    pooled = np.concatenate([u, r], axis=0)
    order = np.argsort(pooled, axis=0, kind="stable")
    ranked = np.take_along_axis(pooled, order, axis=0)
    is_unlearned = (order < k_u).astype(np.float64)
    # below[j]: how many of each population lie among the j smallest values, j = 0..n (split after j).
    zeros = np.zeros((1, u.shape[1]))
    below_u = np.concatenate([zeros, np.cumsum(is_unlearned, axis=0)], axis=0)
    below_r = np.arange(n + 1, dtype=np.float64)[:, None] - below_u
    valid = np.ones_like(below_u, dtype=bool)
    valid[1:n] = ranked[:-1] != ranked[1:]  # a split inside a run of ties is no threshold
    # Values above the split called "unlearned": FNR = unlearned below, FPR = oracles above.
    upper = _log_ratio_epsilon((k_r - below_r) / k_r, below_u / k_u, k_u, k_r, delta)
    lower = _log_ratio_epsilon(below_r / k_r, (k_u - below_u) / k_u, k_u, k_r, delta)
    best = np.where(valid, np.maximum(upper, lower), -np.inf).max(axis=0)
    return np.maximum(best, 0.0)


def example_scores(eps: np.ndarray, bin_width: float = 0.5) -> np.ndarray:
    """Per-example scores ``2 ** -floor(eps / bin_width)`` (1, 1/2, 1/4, ...), whose mean is
    :func:`forgetting_quality`."""
    return np.exp2(-np.floor(np.asarray(eps, dtype=np.float64) / bin_width))


def forgetting_quality(eps: np.ndarray, bin_width: float = 0.5) -> float:
    """The challenge's binned aggregate of per-example epsilons, in (0, 1]; higher is better forgetting.

    Example i falls in bin ``n_i = floor(eps_i / bin_width)`` (bins [0, w), [w, 2w), ...) and scores
    ``2 ** -n_i`` (1, 1/2, 1/4, ...); the result is the mean over examples, so identical populations
    (all eps = 0) give 1.0 and the score never increases when an epsilon grows.

    Departure: the challenge gives 0 points to epsilons beyond its last bin, ``ceil(log(K - 1))``
    (and to its infinite epsilon of disjoint distributions); here no bin is cut off, so the minimum is
    ``2 ** -floor(epsilon_cap(K_u, K_r) / bin_width)`` rather than 0.

    Args:
        eps: [M] finite epsilons >= 0, e.g. from :func:`per_example_epsilon`.
        bin_width: Width of a bin, > 0 (the challenge uses 0.5).
    """
    e = np.asarray(eps, dtype=np.float64).reshape(-1)
    if e.size == 0:
        raise ValueError("forgetting_quality needs at least one epsilon")
    if not np.isfinite(e).all() or (e < 0).any():
        raise ValueError("epsilons must be finite and >= 0")
    if not bin_width > 0:
        raise ValueError(f"bin_width must be > 0, got {bin_width}")
    return float(np.mean(example_scores(e, bin_width)))


def _gaussian_loglik(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    # The constant -log(sqrt(2 pi)) cancels in the ratio.
    return -0.5 * ((x - mean) / std) ** 2 - np.log(std)


def _tpr_at_fpr(pos: np.ndarray, neg: np.ndarray, fpr: float) -> float:
    """TPR (fraction of ``pos`` > t) where t is the lowest score with at most ``fpr`` of ``neg`` above it."""
    neg_desc = np.sort(neg)[::-1]
    allowed = int(np.floor(fpr * neg_desc.size))
    threshold = neg_desc[allowed] if allowed < neg_desc.size else -np.inf
    return float(np.mean(pos > threshold))


def ulira(
    unlearned: np.ndarray, oracle: np.ndarray, seed: int = 0, splits: int = 8
) -> dict[str, float]:
    """U-LiRA-style per-example likelihood-ratio attack: unlearned models against oracles.

    Each of ``splits`` rounds draws a random half/half partition of each population
    (``np.random.default_rng(seed)``): ``K//2`` shadow models, the rest targets. For every example a
    Gaussian is fitted to the shadow unlearned confidences and one to the shadow oracle confidences
    (mean, std with ddof=1 floored at ``SIGMA_FLOOR``), and each target model is scored by the
    log-likelihood ratio ``log N(c; unlearned) - log N(c; oracle)``. Target (model, example) pairs of all
    examples and rounds are pooled, unlearned targets positive, oracle targets negative:

    * ``acc``: balanced accuracy (mean of TPR and TNR), in percent, of the Bayes rule LLR > 0;
      50 means indistinguishable.
    * ``tpr_at_1fpr`` / ``tpr_at_01fpr``: TPR in percent at the threshold that lets at most 1% / 0.1% of
      the pooled oracle-target scores above it (with fewer than 1000 oracle targets the 0.1% threshold is
      their maximum, i.e. FPR 0).

    Departures from U-LiRA: the shadow and target models come from the same two populations (no
    separately trained shadow models, no per-example in/out shadow training), and the attack sees one
    scalar per model (no augmentations).

    Args:
        unlearned: [K_u, M] confidences, K_u >= 4.
        oracle: [K_r, M] confidences, K_r >= 4.
        seed: Seed of the partitions.
        splits: Number of random partitions, >= 1.

    Returns:
        ``{"acc", "tpr_at_1fpr", "tpr_at_01fpr"}``, all in percent.
    """
    u, r = _populations(unlearned, oracle)
    k_u, k_r = u.shape[0], r.shape[0]
    if k_u < MIN_ULIRA_MODELS or k_r < MIN_ULIRA_MODELS:
        raise ValueError(
            f"ulira needs >= {MIN_ULIRA_MODELS} models in each population, got K_u={k_u}, K_r={k_r}"
        )
    if splits < 1:
        raise ValueError(f"splits must be >= 1, got {splits}")
    rng = np.random.default_rng(seed)
    pos_scores, neg_scores = [], []
    for _ in range(splits):
        perm_u, perm_r = rng.permutation(k_u), rng.permutation(k_r)
        shadow_u, target_u = u[perm_u[: k_u // 2]], u[perm_u[k_u // 2 :]]
        shadow_r, target_r = r[perm_r[: k_r // 2]], r[perm_r[k_r // 2 :]]
        mean_u, std_u = shadow_u.mean(axis=0), np.maximum(shadow_u.std(axis=0, ddof=1), SIGMA_FLOOR)
        mean_r, std_r = shadow_r.mean(axis=0), np.maximum(shadow_r.std(axis=0, ddof=1), SIGMA_FLOOR)
        for target, out in ((target_u, pos_scores), (target_r, neg_scores)):
            llr = _gaussian_loglik(target, mean_u, std_u) - _gaussian_loglik(target, mean_r, std_r)
            out.append(llr.reshape(-1))
    pos, neg = np.concatenate(pos_scores), np.concatenate(neg_scores)
    acc = 0.5 * (np.mean(pos > 0) + np.mean(neg <= 0))
    return {
        "acc": float(100.0 * acc),
        "tpr_at_1fpr": 100.0 * _tpr_at_fpr(pos, neg, 0.01),
        "tpr_at_01fpr": 100.0 * _tpr_at_fpr(pos, neg, 0.001),
    }


def half_split(oracle: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The oracle reference line: a random half of the oracles and the other half.

    ``per_example_epsilon(*half_split(oracle))`` (or :func:`ulira` on the halves) scores the oracle
    against itself, the floor a method can be compared with at the same (halved) population size.

    Args:
        oracle: [K_r, M] oracle confidences, K_r >= 2.
        seed: Seed of the permutation (``np.random.default_rng(seed)``).

    Returns:
        ([K_r // 2, M], [K_r - K_r // 2, M]) disjoint sets of oracle rows.
    """
    r = np.asarray(oracle, dtype=np.float64)
    if r.ndim != 2 or r.shape[0] < 2:
        raise ValueError(f"half_split needs oracle [K_r, M] with K_r >= 2, got shape {r.shape}")
    perm = np.random.default_rng(seed).permutation(r.shape[0])
    half = r.shape[0] // 2
    return r[perm[:half]], r[perm[half:]]


# ---------------------------------------------------------------------------- registered metrics
_POP = ("population",)


def _pair(ctx: MetricContext, side: str) -> tuple[np.ndarray, np.ndarray] | Undefined:
    pair = (ctx.population or {}).get(side)
    if pair is None:
        return Undefined(f"no population confidences on {side!r} examples")
    return pair


def _eps(ctx: MetricContext, side: str) -> np.ndarray | Undefined:
    def compute() -> np.ndarray | Undefined:
        pair = _pair(ctx, side)
        if isinstance(pair, Undefined):
            return pair
        try:
            return per_example_epsilon(*pair)
        except ValueError as e:
            return Undefined(str(e))

    return ctx.cached(f"pop/eps/{side}", compute)


def _quality(ctx: MetricContext, side: str) -> float | Undefined:
    eps = _eps(ctx, side)
    return eps if isinstance(eps, Undefined) else forgetting_quality(eps)


def _ulira(ctx: MetricContext, side: str, key: str) -> float | Undefined:
    def compute() -> dict[str, float] | Undefined:
        pair = _pair(ctx, side)
        if isinstance(pair, Undefined):
            return pair
        try:
            return ulira(*pair, seed=ctx.seed)
        except ValueError as e:
            return Undefined(str(e))

    res = ctx.cached(f"pop/ulira/{side}", compute)
    return res if isinstance(res, Undefined) else res[key]


@register_metric("pop/forget/quality", "higher", requires=_POP, title="FQ", digits=3, order=27)
def forget_quality(ctx: MetricContext) -> float | Undefined:
    """Forgetting quality against a population (NeurIPS 2023 challenge): per forget example, an epsilon from
    thresholded attacks separating the K unlearned models' logit-scaled confidences from K oracles'; the mean
    of 2^-floor(eps / 0.5) over D_f, in (0, 1] (1 = indistinguishable from retraining). Rescaling the logits
    moves every model of a population alike, so it cannot fake this."""
    return _quality(ctx, "forget")


@register_metric("pop/forget/quality_hw", "info", requires=_POP)
def forget_quality_hw(ctx: MetricContext) -> float | Undefined:
    """Half-width of the normal 95% interval of pop/forget/quality over forget examples (1.96 x std / sqrt(M))."""
    eps = _eps(ctx, "forget")
    if isinstance(eps, Undefined):
        return eps
    scores = example_scores(eps)
    return float(1.96 * scores.std(ddof=1) / np.sqrt(len(scores))) if len(scores) > 1 else Undefined(
        "one forget example: no interval")


@register_metric("pop/forget/epsilon", "lower", requires=_POP)
def forget_epsilon(ctx: MetricContext) -> float | Undefined:
    """Mean per-example epsilon on D_f (0 = no threshold separates the populations; capped by log(2K - 1))."""
    eps = _eps(ctx, "forget")
    return eps if isinstance(eps, Undefined) else float(eps.mean())


@register_metric("pop/forget/ulira_acc", "lower", requires=_POP, title="U-LiRA", digits=1, order=28)
def forget_ulira_acc(ctx: MetricContext) -> float | Undefined:
    """U-LiRA-style per-example likelihood-ratio attack on D_f: balanced accuracy (percent) at telling an
    unlearned model from an oracle, per example, from Gaussians fitted on held-out halves (50 = cannot)."""
    return _ulira(ctx, "forget", "acc")


@register_metric("pop/forget/ulira_tpr1", "lower", requires=_POP)
def forget_ulira_tpr1(ctx: MetricContext) -> float | Undefined:
    """The U-LiRA attack's true-positive rate (percent) at 1% false-positive rate on D_f."""
    return _ulira(ctx, "forget", "tpr_at_1fpr")


@register_metric("pop/forget/ulira_tpr01", "lower", requires=_POP)
def forget_ulira_tpr01(ctx: MetricContext) -> float | Undefined:
    """The U-LiRA attack's true-positive rate (percent) at 0.1% false-positive rate on D_f."""
    return _ulira(ctx, "forget", "tpr_at_01fpr")


@register_metric("pop/retain/quality", "higher", requires=_POP)
def retain_quality(ctx: MetricContext) -> float | Undefined:
    """Retain-side collateral: the same forgetting-quality score on a sample of D_r (the unlearned models and
    the oracles both trained on these examples, so 1 is expected; lower = unlearning exposed retained data)."""
    return _quality(ctx, "retain")


@register_metric("pop/retain/ulira_acc", "lower", requires=_POP)
def retain_ulira_acc(ctx: MetricContext) -> float | Undefined:
    """Retain-side collateral: the U-LiRA attack's balanced accuracy (percent) on the D_r sample (50 = none)."""
    return _ulira(ctx, "retain", "acc")


@register_metric("pop/k", "info", requires=_POP)
def population_size(ctx: MetricContext) -> float | Undefined:
    """K: the number of unlearned models (and of oracles) in the population comparison."""
    pair = _pair(ctx, "forget")
    return pair if isinstance(pair, Undefined) else float(len(pair[0]))


@register_metric("time/population_s", "info", requires=("population", "timings"))
def population_seconds(ctx: MetricContext) -> float:
    """Wall seconds of the method's K population runs with their inference (0 for the reference rows,
    whose populations are the cached originals and held-out oracles)."""
    return float((ctx.timings or {}).get("population_s") or 0.0)
