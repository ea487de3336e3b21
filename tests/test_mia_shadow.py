"""The MIA-efficacy shadow set: as large as the data allow, members class-balanced, D_test stratified."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from sklearn.svm import SVC

import benchmark.metrics.mia as mia
from benchmark.errors import BenchmarkError
from benchmark.metrics import MetricContext, SplitOutputs, compute_metrics, svc_mia_efficacy
from benchmark.metrics.mia import stratified_sample

C = 4
KEYS = ["eval/mia/efficacy", "eval/mia/shadow_n"]


def split_of(p_true: np.ndarray, labels: np.ndarray) -> SplitOutputs:
    """A split whose softmax probability of the true label is ``p_true``."""
    p_true = np.asarray(p_true, dtype=np.float64)
    logits = np.tile(np.log((1 - p_true) / (C - 1))[:, None], (1, C))
    logits[np.arange(len(labels)), labels] = np.log(p_true)
    return SplitOutputs(logits.astype(np.float32), np.asarray(labels), np.zeros(len(labels)))


def outputs(n_retain: int, test_labels: np.ndarray) -> dict[str, SplitOutputs]:
    """Retain: confident members; test: each example its own distinct probability (to find it again)."""
    rng = np.random.default_rng(0)
    n_test = len(test_labels)
    return {
        "retain": split_of(rng.uniform(0.95, 0.99, n_retain), np.arange(n_retain) % C),
        "test": split_of(np.linspace(0.2, 0.6, n_test), test_labels),
        "forget": split_of(np.full(5, 0.5), np.arange(5) % C),
    }


def shadow_of(out: dict[str, SplitOutputs], monkeypatch, **ctx_args) -> tuple[np.ndarray, np.ndarray]:
    """The shadow members' and non-members' positions in D_r and D_test that MIA-efficacy fits on."""
    seen = {}

    def spy(members: np.ndarray, nonmembers: np.ndarray, target: np.ndarray) -> float:
        seen["m"], seen["n"] = members, nonmembers
        return 0.0

    monkeypatch.setattr(mia, "svc_mia_efficacy", spy)
    values, _ = compute_metrics(MetricContext(out, None, C, **ctx_args), KEYS)
    pos = {s: {float(v): i for i, v in enumerate(out[s].true_prob)} for s in ("retain", "test")}
    m = np.array([pos["retain"][float(v)] for v in seen["m"]])
    n = np.array([pos["test"][float(v)] for v in seen["n"]])
    assert values["eval/mia/shadow_n"] == len(m) == len(n)
    return m, n


def test_stratified_sample_keeps_the_class_proportions():
    labels = np.repeat([0, 1, 2], [500, 300, 200])
    rng = np.random.default_rng(0)
    idx = stratified_sample(labels, 100, rng)
    assert np.all(np.diff(idx) > 0)  # sorted, no repeats
    assert np.bincount(labels[idx]).tolist() == [50, 30, 20]
    # leftovers go to the largest remainders: 7 * (0.5, 0.3, 0.2) = (3.5, 2.1, 1.4) -> (4, 2, 1)
    assert np.bincount(labels[stratified_sample(labels, 7, rng)]).tolist() == [4, 2, 1]
    assert stratified_sample(labels, 1000, rng).tolist() == list(range(1000))
    assert stratified_sample(labels, 0, rng).shape == (0,)
    a = stratified_sample(labels, 333, np.random.default_rng(5))
    assert np.array_equal(a, stratified_sample(labels, 333, np.random.default_rng(5)))
    assert len(a) == 333 and len(np.unique(a)) == 333
    with pytest.raises(BenchmarkError, match="cannot draw"):
        stratified_sample(labels, 1001, rng)


def test_shadow_set_is_all_of_d_test_when_d_r_is_at_least_as_large(monkeypatch):
    out = outputs(500, np.arange(200) % C)
    members, nonmembers = shadow_of(out, monkeypatch)
    assert nonmembers.tolist() == list(range(200))  # every test example, none drawn twice
    assert len(members) == 200 and len(np.unique(members)) == 200
    assert np.bincount(out["retain"].labels[members]).tolist() == [50] * C  # class-balanced


def test_a_capped_shadow_set_keeps_d_test_class_proportions(monkeypatch):
    test_labels = np.repeat([0, 1, 2, 3], [400, 300, 200, 100])  # not balanced
    out = outputs(2000, test_labels)
    members, nonmembers = shadow_of(out, monkeypatch, mia_shadow_max=100, seed=7)
    assert len(members) == len(nonmembers) == 100
    assert np.bincount(test_labels[nonmembers]).tolist() == [40, 30, 20, 10]
    assert np.bincount(out["retain"].labels[members]).tolist() == [25] * C
    again = shadow_of(out, monkeypatch, mia_shadow_max=100, seed=7)
    assert np.array_equal(again[0], members) and np.array_equal(again[1], nonmembers)
    other = shadow_of(out, monkeypatch, mia_shadow_max=100, seed=8)
    assert not np.array_equal(other[1], nonmembers)


def test_a_small_d_r_limits_both_sides(monkeypatch):
    out = outputs(40, np.arange(300) % C)
    members, nonmembers = shadow_of(out, monkeypatch)
    assert members.tolist() == list(range(40)) and len(nonmembers) == 40
    assert np.bincount(out["test"].labels[nonmembers]).tolist() == [10] * C


def test_svc_prediction_on_distinct_values_equals_a_plain_predict():
    rng = np.random.default_rng(1)
    mem = np.round(rng.uniform(0.6, 1.0, 300), 2)
    non = np.round(rng.uniform(0.0, 0.8, 300), 2)
    target = np.round(rng.uniform(0.0, 1.0, 500), 2)  # many repeated values
    clf = SVC(C=3.0, gamma="auto", kernel="rbf").fit(
        np.concatenate([mem, non]).reshape(-1, 1), np.r_[np.ones(300), np.zeros(300)]
    )
    expect = 100.0 * float(np.mean(clf.predict(target.reshape(-1, 1)) == 0))
    assert len(np.unique(target)) < len(target)
    assert svc_mia_efficacy(mem, non, target) == expect


def test_default_cap_covers_all_of_cifar10_test_set():
    cfg = yaml.safe_load((Path(__file__).parents[1] / "configs" / "bench.yaml").read_text())
    assert cfg["eval"]["mia_shadow_max"] >= 10000
