"""Metrics against hand-computed values, including degenerate inputs."""

from __future__ import annotations

import json
import math
import zipfile

import numpy as np
import pytest
import torch

from benchmark.errors import BenchmarkError
from benchmark.metrics import (
    METRICS,
    MetricContext,
    NotedFloat,
    SplitOutputs,
    Undefined,
    balanced_sample,
    compute_metrics,
    format_cell,
    gap_metrics,
    load_outputs,
    loss_mia_accuracy,
    metric_directions,
    metric_docs,
    rmia_scores,
    save_outputs,
    split_values,
    summarize,
    t_critical,
    time_metrics,
    weight_distance,
)
from benchmark.metrics.mia import RMIA_NEEDS_REFERENCES

C = 3  # classes in the hand-made examples


def ce(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per-example cross-entropy in float64."""
    z = logits.astype(np.float64)
    z = z - z.max(axis=1, keepdims=True)
    return np.log(np.exp(z).sum(axis=1)) - z[np.arange(len(labels)), labels]


def from_preds(preds: list[int], labels: list[int], c: int = C) -> SplitOutputs:
    """A split whose argmax is ``preds`` (logit 2 on the predicted class, 0 elsewhere)."""
    logits = np.zeros((len(preds), c), dtype=np.float32)
    logits[np.arange(len(preds)), preds] = 2.0
    lab = np.asarray(labels, dtype=np.int64)
    return SplitOutputs(logits, lab, ce(logits, lab))


def from_probs(p_true: np.ndarray, labels: np.ndarray, c: int = C) -> SplitOutputs:
    """A split whose softmax probability of the true label is ``p_true`` (rest spread evenly)."""
    p_true = np.asarray(p_true, dtype=np.float64)
    logits = np.tile(np.log((1 - p_true) / (c - 1))[:, None], (1, c))
    logits[np.arange(len(labels)), labels] = np.log(p_true)
    lab = np.asarray(labels, dtype=np.int64)
    return SplitOutputs(logits.astype(np.float32), lab, ce(logits, lab))


def empty(c: int = C) -> SplitOutputs:
    return SplitOutputs(
        np.zeros((0, c), np.float16), np.zeros(0, np.int64), np.zeros(0, np.float32)
    )


def assert_record_clean(values: dict, reasons: dict) -> None:
    """No NaN/inf anywhere; every None carries a reason."""
    for k, v in values.items():
        if v is None:
            assert reasons.get(k), f"{k} is None without a reason"
        else:
            assert math.isfinite(v), f"{k} = {v}"


# ---------------------------------------------------------------- outputs


def test_true_prob_and_accuracy_by_hand():
    logits = np.array([[0.0, math.log(3.0), 0.0], [0.0, math.log(3.0), 0.0]], np.float32)
    # softmax = [1, 3, 1] / 5
    so = SplitOutputs(logits, np.array([1, 0]), np.zeros(2))
    np.testing.assert_allclose(so.true_prob, [0.6, 0.2], rtol=1e-6)  # float32 logits
    assert so.pred.tolist() == [1, 1]
    assert so.correct.tolist() == [True, False]
    assert so.accuracy == 50.0
    assert so.logits.dtype == np.float32 and so.labels.dtype == np.int64
    assert so.loss.dtype == np.float32


def test_true_prob_is_stable_for_huge_logits():
    # 1e39 is beyond float32: clipped to 3.4e38, so finite; the true-label prob underflows to 0.
    so = SplitOutputs(np.array([[1e39, 0.0], [1e39, 0.0]]), np.array([0, 1]), np.zeros(2))
    assert np.isfinite(so.logits).all()
    assert so.true_prob.tolist() == [1.0, 0.0]
    assert so.n_nonfinite == 0


def test_split_outputs_validation_and_empty():
    with pytest.raises(BenchmarkError, match="labels must lie in"):
        SplitOutputs(np.zeros((2, 3)), np.array([0, 3]), np.zeros(2))
    with pytest.raises(BenchmarkError, match="shape"):
        SplitOutputs(np.zeros((2, 3)), np.array([0]), np.zeros(2))
    e = empty()
    assert e.n == 0 and e.true_prob.shape == (0,)
    assert isinstance(e.accuracy, Undefined) and "empty" in e.accuracy.reason


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_inf_logits_are_clipped_and_empty_splits_may_have_no_classes(dtype):
    so = SplitOutputs(np.array([[np.inf, 0.0], [0.0, -np.inf]], dtype), [0, 1], np.zeros(2))
    big = float(np.finfo(np.float32).max)
    assert so.logits.dtype == np.float32 and so.logits.tolist() == [[big, 0.0], [0.0, -big]]
    assert so.accuracy == 50.0 and so.true_prob.tolist() == [1.0, 0.0]
    extreme = SplitOutputs(np.array([[-np.inf, np.inf]], dtype), [0], np.zeros(1))  # -max - max: no overflow
    assert extreme.true_prob.tolist() == [0.0] and extreme.n_nonfinite == 0
    e = SplitOutputs(np.zeros((0, 0), np.float16), np.zeros(0, np.int64), np.zeros(0))
    assert len(e) == 0 and e.pred.shape == (0,)
    assert isinstance(e.accuracy, Undefined)


def test_nan_logits_give_undefined_metrics_with_reasons():
    logits = np.array([[np.nan, 0.0, 0.0], [1.0, 0.0, 0.0]])
    so = SplitOutputs(logits, np.array([0, 0]), np.zeros(2))
    assert isinstance(so.accuracy, Undefined) and "NaN" in so.accuracy.reason
    out = _mia_outputs(forget_conf=0.3)
    out["forget"] = so
    values, reasons = compute_metrics(MetricContext(out, None, C))
    assert values["eval/ua"] is None and "NaN" in reasons["eval/ua"]
    assert values["eval/mia/efficacy"] is None and "NaN" in reasons["eval/mia/efficacy"]
    assert values["eval/mia/loss_acc"] is not None  # the losses are finite
    assert_record_clean(values, reasons)


def _outputs() -> dict[str, SplitOutputs]:
    return {
        "forget": from_preds([0, 1, 2, 0], [0, 1, 2, 1]),
        "retain": from_preds([0, 1, 2, 0, 1], [0, 1, 2, 0, 1]),
        "val": from_preds([0, 1], [0, 2]),
        "test": empty(),
    }


def test_save_load_roundtrip(tmp_path):
    out = _outputs()
    path = tmp_path / "sub" / "outputs.npz"
    save_outputs(path, out)
    back = load_outputs(path)
    assert back is not None and list(back) == list(out)
    for split, so in out.items():
        for field in ("logits", "labels", "loss"):
            a, b = getattr(so, field), getattr(back[split], field)
            assert a.dtype == b.dtype and a.shape == b.shape
            np.testing.assert_array_equal(a, b)
    assert [p.name for p in path.parent.iterdir()] == ["outputs.npz"]  # no temp file left


def test_load_detects_truncation_corruption_and_tampering(tmp_path):
    path = tmp_path / "o.npz"
    save_outputs(path, _outputs())
    raw = path.read_bytes()
    assert load_outputs(tmp_path / "missing.npz") is None

    path.write_bytes(raw[: len(raw) // 2])  # truncated
    assert load_outputs(path) is None

    flipped = bytearray(raw)
    flipped[len(raw) // 3] ^= 0xFF  # one flipped byte
    path.write_bytes(bytes(flipped))
    assert load_outputs(path) is None

    # A well-formed archive whose numbers no longer match the stored digest.
    path.write_bytes(raw)
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["forget.loss"] = arrays["forget.loss"] + 1
    with zipfile.ZipFile(path, "w") as zf:
        for k, a in arrays.items():
            with zf.open(f"{k}.npy", "w") as f:
                np.lib.format.write_array(f, a)
    assert load_outputs(path) is None


def test_logits_are_kept_in_float32_so_near_ties_keep_their_order(tmp_path):
    # 10.0 and 10.003 are one float16 value (spacing 0.0078 there): float16 storage made this a tie,
    # which argmax gave to class 0.
    logits = np.array([[10.0, 10.003, 0.0], [10.003, 10.0, 0.0]], np.float32)
    so = SplitOutputs(logits, np.array([1, 1]), ce(logits, np.array([1, 1])))
    assert so.pred.tolist() == [1, 0] and so.accuracy == 50.0
    save_outputs(tmp_path / "o.npz", {"test": so})
    back = load_outputs(tmp_path / "o.npz")
    assert back is not None and back["test"].logits.dtype == np.float32
    np.testing.assert_array_equal(back["test"].logits, logits)
    assert back["test"].pred.tolist() == [1, 0]


def _write_v1_outputs(path, outputs: dict[str, SplitOutputs], provenance: dict | None = None) -> None:
    """An outputs file exactly as format 1 wrote it: float16 logits, a v1 digest, ``"format": 1``."""
    import hashlib

    arrays = {}
    for split, so in outputs.items():
        arrays[f"{split}.logits"] = np.clip(so.logits, -65504, 65504).astype(np.float16)
        arrays[f"{split}.labels"] = so.labels
        arrays[f"{split}.loss"] = so.loss
    h = hashlib.sha256(b"unlearn-bench outputs v1")
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"\0{name}\0{a.dtype.str}\0{a.shape}\0".encode())
        h.update(a.tobytes())
    meta = {"format": 1, "splits": list(outputs), "sha256": h.hexdigest(), **(provenance or {})}
    np.savez(path, **arrays, __meta__=np.array(json.dumps(meta)))


def test_an_old_float16_outputs_file_is_not_read_as_current(tmp_path):
    from benchmark.metrics.outputs import OutputsFormatError, read_outputs

    path = tmp_path / "old.npz"
    _write_v1_outputs(path, _outputs())
    with pytest.raises(OutputsFormatError, match="format 1"):
        read_outputs(path)
    assert load_outputs(path) is None
    # a current-format file whose logits are not float32 is refused too
    save_outputs(path, _outputs())
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    meta = json.loads(str(arrays.pop("__meta__")[()]))
    arrays = {k: (a.astype(np.float16) if k.endswith(".logits") else a) for k, a in arrays.items()}
    from benchmark.metrics.outputs import _digest

    meta["sha256"] = _digest(arrays)
    np.savez(path, **arrays, __meta__=np.array(json.dumps(meta)))
    with pytest.raises(ValueError, match="not float32"):
        read_outputs(path)


def test_cached_outputs_recompute_an_old_float16_file_with_one_warning(tmp_path, digits, capsys):
    from benchmark.data.splits import make_split
    from benchmark.data.transforms import BatchTransform
    from benchmark.evaluate import cached_outputs, full_outputs
    from benchmark.io import state_sha256
    from benchmark.metrics.outputs import read_outputs
    from benchmark.models import build_model

    split = make_split(digits.train_y.numpy(), "random", 0.1, seed=0, train_subset=300)
    tf = BatchTransform(tuple(digits.mean), tuple(digits.std))
    torch.manual_seed(0)
    net = build_model("digits_mlp", digits.num_classes, digits.in_channels)
    cpu = torch.device("cpu")
    fresh = full_outputs(net, digits, split, tf, cpu)
    path = tmp_path / "o.npz"
    # the right model and split, only the format is old: still recomputed, never trusted
    _write_v1_outputs(path, fresh, {"model_sha256": state_sha256(net), "split_sha256": split.sha256})
    capsys.readouterr()
    full = cached_outputs(path, net, digits, split, tf, cpu)
    warned = capsys.readouterr().out.splitlines()
    assert warned == [f"warning: cached outputs {path} were written in format 1; this version reads format 2 "
                      "(float32 logits); recomputing them"]
    assert full["test"].logits.dtype == np.float32
    np.testing.assert_array_equal(full["test"].logits, fresh["test"].logits)
    assert read_outputs(path)[1]["format"] == 2  # rewritten in the current format
    cached_outputs(path, net, digits, split, tf, cpu)  # now a silent hit
    assert capsys.readouterr().out == ""


# ---------------------------------------------------------------- accuracy


def test_accuracy_metrics_by_hand():
    out = _outputs()
    out["test"] = from_preds([1, 2, 0, 1], [0, 0, 1, 2])  # all wrong
    values, reasons = compute_metrics(MetricContext(out, None, C))
    assert values["eval/forget/acc"] == 75.0
    assert values["eval/ua"] == 25.0
    assert values["eval/retain/acc"] == values["eval/ra"] == 100.0  # all correct
    assert values["eval/val/acc"] == 50.0
    assert values["eval/test/acc"] == values["eval/ta"] == 0.0
    assert "eval/test_forgotten/acc" not in values  # class scenario only
    assert_record_clean(values, reasons)


def test_all_correct_and_all_wrong_forget():
    out = _outputs()
    out["forget"] = from_preds([2, 2], [2, 2])  # all correct, a single class
    v, _ = compute_metrics(MetricContext(out, None, C), ["eval/ua", "eval/forget/acc"])
    assert v == {"eval/ua": 0.0, "eval/forget/acc": 100.0}
    out["forget"] = from_preds([0, 1], [2, 2])  # all wrong
    v, _ = compute_metrics(MetricContext(out, None, C), ["eval/ua"])
    assert v == {"eval/ua": 100.0}


def test_class_scenario_splits_test_by_class():
    out = _outputs()
    out["test"] = from_preds([0, 1, 1, 2, 0], [0, 0, 1, 2, 2])
    values, reasons = compute_metrics(MetricContext(out, [0], C))
    assert values["eval/test_forgotten/acc"] == 50.0  # class 0: 1 of 2
    assert values["eval/ta"] == pytest.approx(200 / 3)  # classes 1, 2: 2 of 3
    assert values["eval/test_remaining/acc"] == pytest.approx(200 / 3)
    assert values["eval/test/acc"] == 60.0  # 3 of 5
    assert_record_clean(values, reasons)


def test_empty_class_after_class_forgetting_is_undefined_with_reason():
    out = _outputs()
    out["test"] = from_preds([0, 1], [0, 0])  # only examples of the forgotten class
    values, reasons = compute_metrics(MetricContext(out, [0], C))
    assert values["eval/ta"] is None and "empty" in reasons["eval/ta"]
    assert values["eval/test_remaining/acc"] is None
    assert values["eval/test_forgotten/acc"] == 50.0
    assert_record_clean(values, reasons)


def test_empty_and_missing_splits_are_undefined_never_nan():
    out = _outputs()
    out["forget"] = empty()
    del out["val"]
    values, reasons = compute_metrics(MetricContext(out, None, C))
    for key in ("eval/forget/acc", "eval/ua", "eval/mia/efficacy", "eval/mia/loss_acc"):
        assert values[key] is None, key
    assert "forget" in reasons["eval/ua"]
    assert "no 'val' split" in reasons["eval/val/acc"]
    assert "test" in reasons["eval/ta"]  # the test split is empty
    assert reasons["eval/mia/rmia_auc"] == RMIA_NEEDS_REFERENCES
    assert_record_clean(values, reasons)


def test_class_only_metric_outside_class_scenario_and_unknown_name():
    values, reasons = compute_metrics(
        MetricContext(_outputs(), None, C), ["eval/test_forgotten/acc"]
    )
    assert values == {"eval/test_forgotten/acc": None}
    assert "class-forgetting scenario" in reasons["eval/test_forgotten/acc"]
    with pytest.raises(BenchmarkError, match="did you mean 'eval/ua'"):
        compute_metrics(MetricContext(_outputs(), None, C), ["eval/uaa"])


def test_context_validation():
    with pytest.raises(BenchmarkError, match="forget_classes"):
        MetricContext(_outputs(), [3], C)
    with pytest.raises(BenchmarkError, match="logits"):
        MetricContext(_outputs(), None, 10)


# ---------------------------------------------------------------- MIA-efficacy


def _mia_outputs(forget_conf: float, n_forget: int = 40, seed: int = 0) -> dict[str, SplitOutputs]:
    rng = np.random.default_rng(seed)

    def split(n: int, lo: float, hi: float) -> SplitOutputs:
        return from_probs(rng.uniform(lo, hi, n), rng.integers(0, C, n))

    near = (forget_conf - 0.02, forget_conf + 0.02) if forget_conf < 0.9 else (0.97, 0.999)
    return {
        "retain": split(300, 0.97, 0.999),  # members: confident
        "test": split(60, 0.28, 0.32),  # non-members: conf ~0.3
        "forget": split(n_forget, *near),
        "val": split(10, 0.28, 0.32),
    }


def test_mia_efficacy_separable_case():
    remembered = MetricContext(_mia_outputs(forget_conf=1.0), None, C)
    v, _ = compute_metrics(remembered, ["eval/mia/efficacy", "eval/mia/shadow_n"])
    assert v["eval/mia/efficacy"] == 0.0  # forget looks like training data
    assert v["eval/mia/shadow_n"] == 60  # min(|retain|, |test|)
    forgotten = MetricContext(_mia_outputs(forget_conf=0.3), None, C)
    v, _ = compute_metrics(forgotten, ["eval/mia/efficacy"])
    assert v["eval/mia/efficacy"] == 100.0  # forget looks like unseen data


def test_mia_efficacy_cap_and_determinism():
    ctx = MetricContext(_mia_outputs(forget_conf=0.3), None, C, mia_shadow_max=7, seed=3)
    v1, _ = compute_metrics(ctx, ["eval/mia/shadow_n", "eval/mia/efficacy"])
    v2, _ = compute_metrics(
        MetricContext(_mia_outputs(0.3), None, C, mia_shadow_max=7, seed=3), ["eval/mia/efficacy"]
    )
    assert v1["eval/mia/shadow_n"] == 7
    assert v1["eval/mia/efficacy"] == v2["eval/mia/efficacy"]


def test_mia_efficacy_single_class_forget_and_degenerate_shadow():
    out = _mia_outputs(forget_conf=0.3)
    out["forget"] = from_probs(np.full(5, 0.3), np.full(5, 2))  # a single class
    v, r = compute_metrics(MetricContext(out, None, C), ["eval/mia/efficacy"])
    assert v["eval/mia/efficacy"] == 100.0
    out["test"] = empty()  # shadow set would have only members
    v, r = compute_metrics(MetricContext(out, None, C), ["eval/mia/efficacy", "eval/mia/shadow_n"])
    assert v == {"eval/mia/efficacy": None, "eval/mia/shadow_n": None}
    assert "single class" in r["eval/mia/efficacy"]


def test_balanced_sample_water_fills():
    labels = np.array([0] * 10 + [1] * 10 + [2] * 2)
    rng = np.random.default_rng(0)
    idx = balanced_sample(labels, 13, rng)
    assert len(np.unique(idx)) == 13
    assert sorted(np.bincount(labels[idx]).tolist()) == [2, 5, 6]
    idx = balanced_sample(labels, 12, np.random.default_rng(1))
    assert np.bincount(labels[idx]).tolist() == [5, 5, 2]
    assert balanced_sample(labels, 0, rng).size == 0
    with pytest.raises(BenchmarkError):
        balanced_sample(labels, 23, rng)


# ---------------------------------------------------------------- loss MIA


def test_loss_mia_by_hand():
    rng = np.random.default_rng(0)
    sep = loss_mia_accuracy(np.full(20, 0.01), np.full(20, 3.0), rng)
    assert sep == 100.0
    same = loss_mia_accuracy(np.full(20, 1.0), np.full(30, 1.0), rng)
    assert same == 50.0  # constant feature: every fold predicts one class, half right
    few = loss_mia_accuracy(np.array([0.1, 0.2, 0.3]), np.array([2.0, 2.5, 3.0, 4.0]), rng)
    assert few == 100.0  # 3 folds, no crash
    one = loss_mia_accuracy(np.array([0.1]), np.array([2.0, 3.0]), rng)
    assert isinstance(one, Undefined) and "at least 2" in one.reason


def test_loss_mia_metric_subsamples_to_equal_sizes():
    out = _outputs()
    out["forget"] = from_probs(np.full(30, 0.99), np.zeros(30, np.int64))  # loss 0.01
    out["test"] = from_probs(np.full(12, 0.2), np.ones(12, np.int64))  # loss 1.6
    v, r = compute_metrics(MetricContext(out, None, C), ["eval/mia/loss_acc"])
    assert v["eval/mia/loss_acc"] == 100.0


# ---------------------------------------------------------------- RMIA


def test_rmia_scores_by_hand():
    # Pr = ((1 + 0.3) * 0.5 + 0.7) / 2 = 0.675 everywhere
    r_z = np.array([0.5, 0.1, 0.8]) / 0.675  # [0.741, 0.148, 1.185]
    kw = {"target_z": np.array([0.5, 0.1, 0.8]), "refs_z": np.full((1, 3), 0.5)}
    s = rmia_scores(np.array([0.9, 0.2]), np.full((1, 2), 0.5), **kw)
    # r_x = [1.333, 0.296]: beats all three z; beats only z=0.148
    np.testing.assert_allclose(s, [1.0, 1 / 3])
    s = rmia_scores(np.array([0.9, 0.25]), np.full((1, 2), 0.5), gamma=2.0, **kw)
    # gamma * r_z = [1.481, 0.296, 2.370]; r_x = [1.333, 0.370]
    np.testing.assert_allclose(s, [1 / 3, 1 / 3])
    # the candidate z[2] itself: beats z0 and z1, compared with the 2 others only
    s = rmia_scores(np.array([0.8]), np.full((1, 1), 0.5), self_in_z=np.array([2]), **kw)
    np.testing.assert_allclose(s, [1.0])
    assert r_z[2] > r_z[0] > r_z[1]


def _rmia_outputs(member_p: float, n: int = 20, seed: int = 0) -> dict[str, SplitOutputs]:
    rng = np.random.default_rng(seed)
    lab = rng.integers(0, C, n)
    return {
        "forget": from_probs(np.full(n, member_p) + rng.uniform(0, 0.01, n), lab),
        "test": from_probs(0.3 + rng.uniform(0, 0.01, n), lab),
        "val": from_probs(0.3 + rng.uniform(0, 0.01, n), lab),
        "retain": from_probs(np.full(n, 0.9), lab),
    }


def test_rmia_auc_member_signal_and_no_signal():
    refs = [_rmia_outputs(0.3, seed=0), _rmia_outputs(0.3, seed=0)]  # never saw D_f
    leaky = MetricContext(_rmia_outputs(0.95), None, C, reference_outputs=refs)
    v, _ = compute_metrics(leaky, ["eval/mia/rmia_auc"])
    assert v["eval/mia/rmia_auc"] == 1.0
    # Every probability equal: every ratio ties, every score is 0 -> AUC 0.5 exactly.
    flat = {
        s: from_probs(np.full(8, 0.4), np.zeros(8, np.int64)) for s in ("forget", "test", "val")
    }
    ctx = MetricContext(flat, None, C, reference_outputs=[dict(flat)])
    v, _ = compute_metrics(ctx, ["eval/mia/rmia_auc"])
    assert v["eval/mia/rmia_auc"] == 0.5


def test_rmia_undefined_without_or_with_mismatched_references():
    v, r = compute_metrics(MetricContext(_rmia_outputs(0.9), None, C), ["eval/mia/rmia_auc"])
    assert v["eval/mia/rmia_auc"] is None
    assert r["eval/mia/rmia_auc"] == (
        "needs at least 2 seeds: reference models are the retrain oracles of the other seeds"
    )
    ref = _rmia_outputs(0.3, n=19)
    ctx = MetricContext(_rmia_outputs(0.9), None, C, reference_outputs=[ref])
    v, r = compute_metrics(ctx, ["eval/mia/rmia_auc"])
    assert v["eval/mia/rmia_auc"] is None and "does not match" in r["eval/mia/rmia_auc"]


# ---------------------------------------------------------------- gaps, weights, time


def test_gap_metrics_by_hand():
    u = {"eval/ua": 10.0, "eval/ra": 95.0, "eval/ta": 90.0, "eval/mia/efficacy": 20.0}
    o = {"eval/ua": 6.0, "eval/ra": 99.0, "eval/ta": 91.0, "eval/mia/efficacy": 14.0}
    g = gap_metrics(u, o)
    assert g == {
        "gap/ua": 4.0,
        "gap/ra": 4.0,
        "gap/ta": 1.0,
        "gap/mia_efficacy": 6.0,
        "gap/avg": 3.75,
    }
    values, reasons = split_values(g)
    assert values["gap/avg"] == 3.75 and reasons == {}


def test_gap_avg_without_mia_is_noted():
    u = {"eval/ua": 10.0, "eval/ra": 95.0, "eval/ta": 90.0, "eval/mia/efficacy": 20.0}
    o = {"eval/ua": 6.0, "eval/ra": 99.0, "eval/ta": 91.0, "eval/mia/efficacy": None}
    g = gap_metrics(u, o)
    assert isinstance(g["gap/mia_efficacy"], Undefined)
    assert isinstance(g["gap/avg"], NotedFloat) and g["gap/avg"] == 3.0  # (4 + 4 + 1) / 3
    values, reasons = split_values(g)
    assert values["gap/avg"] == 3.0 and type(values["gap/avg"]) is float
    assert "gap/mia_efficacy undefined" in reasons["gap/avg"]
    assert values["gap/mia_efficacy"] is None and "oracle" in reasons["gap/mia_efficacy"]
    json.dumps(values)
    g = gap_metrics({**u, "eval/ua": None}, o)
    assert isinstance(g["gap/avg"], Undefined) and "gap/ua" in g["gap/avg"].reason


def test_weight_distance_by_hand():
    b = {"w": torch.tensor([3.0, 0.0]), "v": torch.tensor([0.0, 4.0]), "n": torch.tensor(7)}
    a = {"w": torch.tensor([0.0, 0.0]), "v": torch.tensor([0.0, 4.0]), "n": torch.tensor(1)}
    assert weight_distance(a, b) == pytest.approx(0.6)  # sqrt(9) / sqrt(9 + 16); int buffer skipped
    assert weight_distance(a, b, keys=["v"]) == 0.0
    z = weight_distance(b, a, keys=["w"])
    assert isinstance(z, Undefined) and "zero norm" in z.reason
    with pytest.raises(BenchmarkError, match="missing"):
        weight_distance(a, b, keys=["x"])


def test_time_metrics():
    assert time_metrics(10.0, 100.0) == {"time/unlearn_s": 10.0, "time/rte": 10.0}
    t = time_metrics(0.0, 100.0)
    assert t["time/unlearn_s"] == 0.0
    assert isinstance(t["time/rte"], Undefined) and t["time/rte"].reason == "no unlearning time"
    assert isinstance(time_metrics(5.0, None)["time/rte"], Undefined)
    with pytest.raises(BenchmarkError):
        time_metrics(-1.0, 10.0)


# ---------------------------------------------------------------- registry, directions


def test_every_key_has_a_direction_and_a_definition():
    directions, docs = metric_directions(), metric_docs()
    assert set(directions) == set(docs)
    out = _outputs()
    out["test"] = from_preds([0, 1, 1, 2, 0], [0, 0, 1, 2, 2])
    values, _ = compute_metrics(MetricContext(out, [0], C))
    keys = set(values) | set(gap_metrics(values, values)) | set(time_metrics(1.0, 2.0))
    keys |= {"weight/dist_original", "weight/dist_oracle"}
    assert keys <= set(directions)
    assert directions["gap/avg"] == "lower" and directions["time/rte"] == "higher"
    assert directions["eval/ra"] == directions["eval/ta"] == "higher"
    for key in ("eval/ua", "eval/mia/efficacy", "eval/mia/rmia_auc", "eval/mia/loss_acc"):
        assert directions[key] == "oracle"
    for name, metric in METRICS.items():
        assert metric.doc and metric.summary, name


def test_undefined_and_split_values():
    u = Undefined("why")
    assert not u and u != 0 and u.to_json() == {"value": None, "reason": "why"}
    with pytest.raises(TypeError):
        float(u)
    values, reasons = split_values({"a": u, "b": float("nan"), "c": 3, "d": None})
    assert values == {"a": None, "b": None, "c": 3, "d": None}
    assert reasons["a"] == "why" and "non-finite" in reasons["b"] and reasons["d"] == "no value"


# ---------------------------------------------------------------- summary


def test_summarize_t_interval_by_hand():
    s = summarize([1.0, 2.0, 3.0])
    assert s["mean"] == 2.0 and s["std"] == 1.0 and s["n"] == 3
    assert s["half_width"] == pytest.approx(2.484, abs=1e-3)  # 4.3027 / sqrt(3)
    assert s["ci_low"] == pytest.approx(2 - 2.4841, abs=1e-4)
    assert s["ci_high"] == pytest.approx(2 + 2.4841, abs=1e-4)
    assert format_cell(s) == "2.0 ± 2.5"
    assert format_cell(s, digits=2) == "2.00 ± 2.48"


def test_summarize_single_missing_and_empty():
    s = summarize([12.34])
    assert (s["mean"], s["std"], s["ci_low"], s["ci_high"], s["n"]) == (12.34, 0.0, 12.34, 12.34, 1)
    assert format_cell(s) == "12.3 (n=1)"
    s = summarize([None, 1.0, 3.0])
    assert s["n"] == 2 and s["n_missing"] == 1 and s["mean"] == 2.0
    assert s["half_width"] == pytest.approx(12.7062, abs=1e-3)  # t(0.975, 1) * sqrt(2) / sqrt(2)
    s = summarize([None])
    assert s["n"] == 0 and s["mean"] is None and format_cell(s) == "n/a"
    with pytest.raises(ValueError):
        summarize([1.0, float("nan")])


def test_t_critical_values():
    for df, t in ((1, 12.706205), (2, 4.302653), (5, 2.570582), (30, 2.042272)):
        assert t_critical(df) == pytest.approx(t, abs=1e-5)


def test_newton_logistic_regression_matches_sklearn():
    from sklearn.linear_model import LogisticRegression

    from benchmark.metrics.mia import logistic_regression_1d

    rng = np.random.default_rng(3)
    x = np.concatenate([rng.exponential(0.1, 40), rng.exponential(0.6, 40)])
    y = np.r_[np.ones(40), np.zeros(40)]
    ref = LogisticRegression(tol=1e-10, max_iter=10_000).fit(x[:, None], y)
    w, b = logistic_regression_1d(x, y)
    assert w == pytest.approx(ref.coef_[0, 0], rel=1e-5) and b == pytest.approx(ref.intercept_[0], rel=1e-5)
