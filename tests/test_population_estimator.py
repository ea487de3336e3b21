"""Population estimators of forgetting quality: challenge epsilon, binned score, U-LiRA, logit confidence."""

from __future__ import annotations

import math

import numpy as np
import pytest

from benchmark.metrics.population import (
    DELTA,
    epsilon_cap,
    forgetting_quality,
    half_split,
    logit_confidence,
    per_example_epsilon,
    ulira,
)


def _column(values: list[float]) -> np.ndarray:
    return np.asarray(values, dtype=np.float64)[:, None]


def test_identical_populations_give_zero_epsilon_and_full_quality() -> None:
    rng = np.random.default_rng(0)
    values = rng.normal(size=(16, 40))
    values[:, :5] = np.round(values[:, :5])  # ties inside and across the populations
    eps = per_example_epsilon(values, values.copy())
    np.testing.assert_array_equal(eps, np.zeros(40))
    assert forgetting_quality(eps) == 1.0
    constant = np.full((5, 3), 2.5)
    np.testing.assert_array_equal(per_example_epsilon(constant, constant), np.zeros(3))


@pytest.mark.parametrize("shift", [100.0, -100.0])
def test_disjoint_populations_hit_the_cap(shift: float) -> None:
    rng = np.random.default_rng(1)
    unlearned = rng.normal(size=(8, 30)) + shift
    oracle = rng.normal(size=(6, 30))
    cap = epsilon_cap(8, 6)
    np.testing.assert_array_equal(per_example_epsilon(unlearned, oracle), np.full(30, cap))
    # Zero counts floored at 1/2: max(log((1-d-1/12)*16), log((1-d-1/16)*12)) = log(44/3 - 16d).
    assert cap == pytest.approx(math.log(44 / 3 - 16 * DELTA), abs=1e-12)
    assert epsilon_cap(512, 512) == pytest.approx(math.log(1023 - 1024 * DELTA), abs=1e-12)
    # The lowest score these sizes allow: bin floor(2.685 / 0.5) = 5 -> 2**-5.
    floor_score = 2.0 ** -math.floor(cap / 0.5)
    assert forgetting_quality(per_example_epsilon(unlearned, oracle)) == floor_score == 2.0**-5


def test_hand_computed_one_overlap() -> None:
    # oracle {0, 1, 2, 4}, unlearned {3, 5, 6, 7}: only 3 < 4 overlaps. Zero counts count as 1/2 (rate 1/8).
    # Best threshold: above 2.5 -> "unlearned": FPR = 1/4 (oracle 4), FNR = 0 -> 1/8;
    #   log((1 - d - 1/4) / (1/8)) = log(6 - 8d) = 1.7918 (other ratio: log((1 - d - 1/8) / (1/4)) = 1.2528).
    # Symmetric threshold above 4.5: FPR = 0 -> 1/8, FNR = 1/4 (unlearned 3) -> the same log(6 - 8d).
    # Threshold above 3.5: FPR = FNR = 1/4 -> log(3 - 4d) = 1.0986; reversed orientations are worse than chance.
    # Disjoint would give the cap log((1 - d - 1/8) * 8) = log(7 - 8d) = 1.9459.
    eps = per_example_epsilon(_column([3, 5, 6, 7]), _column([0, 1, 2, 4]))
    assert eps[0] == pytest.approx(math.log(6 - 8 * DELTA), abs=1e-12)
    assert epsilon_cap(4, 4) == pytest.approx(math.log(7 - 8 * DELTA), abs=1e-12)
    assert eps[0] < epsilon_cap(4, 4)
    assert forgetting_quality(eps) == 2.0**-3  # floor(1.79 / 0.5) = 3
    # With delta = 0 the same threshold gives exactly log 6.
    assert per_example_epsilon(_column([3, 5, 6, 7]), _column([0, 1, 2, 4]), delta=0.0)[
        0
    ] == pytest.approx(math.log(6.0))


def test_epsilon_is_within_bounds_and_direction_free() -> None:
    rng = np.random.default_rng(2)
    unlearned = rng.normal(0.7, 1.0, size=(12, 200))
    oracle = rng.normal(0.0, 1.0, size=(10, 200))
    eps = per_example_epsilon(unlearned, oracle)
    assert eps.shape == (200,)
    assert (eps >= 0).all() and (eps <= epsilon_cap(12, 10)).all()
    # Mirroring both populations only flips the orientation of the best threshold.
    np.testing.assert_allclose(per_example_epsilon(-unlearned, -oracle), eps)


def test_forgetting_quality_is_monotone_in_the_shift() -> None:
    rng = np.random.default_rng(3)
    oracle = rng.normal(size=(10, 60))
    # Each unlearned model sits above its paired oracle, so the unlearned population dominates
    # at every shift and moving it further up can only help the attacker.
    base = oracle + np.abs(rng.normal(0.0, 0.3, size=oracle.shape))
    previous_eps = np.zeros(60)
    previous_quality = 1.0
    for shift in np.linspace(0.0, 8.0, 17):
        eps = per_example_epsilon(base + shift, oracle)
        quality = forgetting_quality(eps)
        assert (eps >= previous_eps - 1e-12).all()
        assert quality <= previous_quality
        previous_eps, previous_quality = eps, quality
    assert previous_quality == 2.0 ** -math.floor(epsilon_cap(10, 10) / 0.5)


def test_forgetting_quality_bins() -> None:
    assert forgetting_quality(np.array([0.0, 0.49, 0.5, 1.2])) == pytest.approx(
        (1 + 1 + 0.5 + 0.25) / 4
    )
    assert forgetting_quality(np.array([0.3]), bin_width=0.25) == 0.5
    with pytest.raises(ValueError):
        forgetting_quality(np.array([-0.1]))
    with pytest.raises(ValueError):
        forgetting_quality(np.array([]))


def test_logit_confidence() -> None:
    logits = np.array([[2.0, 0.5, -1.0], [0.0, 0.0, 3.0]], dtype=np.float32)
    labels = np.array([0, 1])
    p = np.exp(logits.astype(np.float64))
    p /= p.sum(axis=1, keepdims=True)
    expected = np.log(p[[0, 1], labels] / (1 - p[[0, 1], labels]))
    conf = logit_confidence(logits, labels)
    assert conf.dtype == np.float64 and conf.shape == (2,)
    np.testing.assert_allclose(conf, expected, rtol=1e-12)
    np.testing.assert_allclose(logit_confidence(logits + 1000.0, labels), conf, rtol=1e-12)
    assert not np.allclose(logit_confidence(0.5 * logits, labels), conf)  # temperature matters
    # Leading model axis is kept.
    assert logit_confidence(np.stack([logits, logits]), labels).shape == (2, 2)
    huge = np.array([[1e30, 0.0, -1e30], [0.0, 3e38, -3e38]], dtype=np.float32)
    out = logit_confidence(huge, np.array([0, 0]))
    assert np.isfinite(out).all()
    assert out[0] == pytest.approx(1e30, rel=1e-6) and out[1] == pytest.approx(-3e38, rel=1e-6)
    with pytest.raises(ValueError):
        logit_confidence(logits, np.array([0, 3]))


def test_ulira_identical_is_chance() -> None:
    rng = np.random.default_rng(4)
    unlearned = rng.normal(size=(16, 400))
    oracle = rng.normal(size=(16, 400))
    out = ulira(unlearned, oracle, seed=0, splits=4)
    assert set(out) == {"acc", "tpr_at_1fpr", "tpr_at_01fpr"}
    assert out["acc"] == pytest.approx(50.0, abs=3.0)
    assert out["tpr_at_1fpr"] < 5.0
    assert out == ulira(unlearned, oracle, seed=0, splits=4)  # seeded


@pytest.mark.parametrize("k", [8, 16])
def test_ulira_separated_is_perfect(k: int) -> None:
    rng = np.random.default_rng(5)
    unlearned = rng.normal(8.0, 1.0, size=(k, 200))
    oracle = rng.normal(0.0, 1.0, size=(k, 200))
    out = ulira(unlearned, oracle)
    assert out["acc"] > 99.0
    assert out["tpr_at_1fpr"] > 99.0
    if k >= 16:
        # With 4 shadows per side the per-example std estimates are heavy-tailed, and a few
        # oracle targets get large ratios: the 0.1% threshold needs more shadows to be clean.
        assert out["tpr_at_01fpr"] > 99.0


def test_ulira_needs_four_models() -> None:
    with pytest.raises(ValueError, match="ulira needs"):
        ulira(np.zeros((3, 5)), np.zeros((8, 5)))
    with pytest.raises(ValueError, match="ulira needs"):
        ulira(np.zeros((8, 5)), np.zeros((3, 5)))


def test_half_split_and_bad_inputs() -> None:
    oracle = np.arange(7.0)[:, None] * np.ones((1, 4))
    a, b = half_split(oracle, seed=1)
    assert a.shape == (3, 4) and b.shape == (4, 4)
    assert sorted(np.concatenate([a[:, 0], b[:, 0]]).tolist()) == list(range(7))
    a2, _ = half_split(oracle, seed=1)
    np.testing.assert_array_equal(a, a2)
    assert per_example_epsilon(a, b).shape == (4,)
    with pytest.raises(ValueError):
        per_example_epsilon(np.zeros((4, 3)), np.zeros((4, 2)))
    with pytest.raises(ValueError):
        per_example_epsilon(np.zeros((1, 3)), np.ones((1, 3)))
    with pytest.raises(ValueError):
        per_example_epsilon(np.full((4, 3), np.nan), np.zeros((4, 3)))
