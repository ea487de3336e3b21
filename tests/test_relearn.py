"""The relearning attack: works on a copy, is seeded, and computes T, RCD and the recovery gap
exactly as docs/protocol.md section 4 defines them (the relearn/* metrics of the registry)."""

from __future__ import annotations

import copy
import math
import statistics

import pytest
import torch

from benchmark.callbacks.relearn import (
    Curve,
    Levels,
    RelearnAttack,
    RelearnTarget,
    convergence_step,
    default_budget,
    default_eval_every,
    recovery_gap,
)
from benchmark.metrics import METRICS, MetricContext, compute_metrics
from benchmark.models import build_model, trainable_state

LEVELS = Levels(loss_original=0.1, loss_oracle=2.1, acc_original=100.0, acc_oracle=60.0, delta=0.05)
# A* = 100 - 0.05 * 40 = 98; L* = 0.2


def curve(loss, acc=None, steps=(0, 5, 10, 15), max_steps=15):
    acc = acc if acc is not None else [50.0] * len(loss)
    return Curve(steps=list(steps), loss=list(loss), acc=list(acc), weight_dist=[0.1 * i for i in range(len(loss))],
                 max_steps=max_steps)


def rcd_metrics(curves, oracle_curves, levels: Levels, attacker: str) -> tuple[dict, dict]:
    """The registered relearn/<attacker>/* metrics of one model's curves (one per repeat) against the oracle's."""
    runs = curves if isinstance(curves, list) else [curves]
    oracle = oracle_curves if isinstance(oracle_curves, list) else [oracle_curves]
    ctx = MetricContext(outputs={}, forget_classes=None, num_classes=1, curves={attacker: runs},
                        oracle_curves={attacker: oracle}, levels=levels)
    return compute_metrics(ctx, [n for n in METRICS.names() if n.startswith("relearn/")])


def _attack(digits, tiny_data, seed=0, steps=12, repeats=1):
    f = tiny_data.forget
    target = RelearnTarget(digits.train_x[f], digits.train_y[f], digits.train_x[f], digits.train_y[f],
                           tiny_data.transform)
    torch.manual_seed(0)
    net = build_model("digits_cnn", 10, 1)  # BatchNorm buffers too
    cb = RelearnAttack(target, {"sgd": {"lr": 0.01, "momentum": 0.9, "batch_size": 8},
                                "adam": {"lr": 1e-3, "batch_size": 8}},
                       max_steps=steps, eval_every=3, seed=seed, original_state=trainable_state(net), repeats=repeats)
    return net, cb


def test_levels_follow_the_protocol():
    assert LEVELS.target_loss == pytest.approx(0.1 + 0.05 * 2.0)
    assert LEVELS.target_acc == pytest.approx(100 - 0.05 * 40)  # = A_r + 0.95 (A_o - A_r)
    assert LEVELS.undefined_reason is None and LEVELS.acc_undefined_reason is None
    assert "nothing measurable" in Levels(0.5, 0.5005, 100, 99).undefined_reason
    assert "accuracy gap" in Levels(0.1, 2.0, 100, 99.5).acc_undefined_reason


def test_budget_defaults():
    assert default_budget(4500, 128) == 10 * 36
    assert default_eval_every(360) == 3 and default_eval_every(50) == 1


def test_convergence_step_censoring_and_rcd():
    fast = curve([2.0, 1.0, 0.15, 0.1])
    slow = curve([2.1, 1.9, 1.0, 0.2])
    never = curve([3.0, 2.9, 2.5, 2.2])
    assert convergence_step(fast, LEVELS) == (10, False)  # 0.15 <= L* = 0.2
    assert convergence_step(slow, LEVELS) == (15, False)
    assert convergence_step(never, LEVELS) == (15, True)
    vals, why = rcd_metrics(fast, slow, LEVELS, "sgd")
    assert vals["relearn/sgd/rcd"] == pytest.approx(10 / 15) and "relearn/sgd/rcd" not in why
    assert vals["relearn/sgd/rcd_dist"] == pytest.approx(abs(math.log2(10 / 15)))
    vals, _ = rcd_metrics(never, slow, LEVELS, "sgd")
    assert vals["relearn/sgd/censored"] == 1.0 and vals["relearn/sgd/rcd"] == 1.0
    # the oracle against itself: RCD 1; the original (at L_o from step 0): RCD 0, at the distance cap
    assert rcd_metrics(slow, slow, LEVELS, "adam")[0]["relearn/adam/rcd"] == 1.0
    at_once = curve([0.1], [100.0], steps=[0])
    v = rcd_metrics(at_once, slow, LEVELS, "adam")[0]
    assert v["relearn/adam/rcd"] == 0.0 and v["relearn/adam/rcd_dist"] == 5.0


def test_accuracy_criterion_by_hand():
    # A* = 98: the oracle reaches it at step 10, the model at 5 (T_acc), though its loss never reaches L*
    oracle = curve([2.1, 1.5, 0.5, 0.15], [60, 80, 98, 100])
    model = curve([3.0, 2.0, 1.0, 0.9], [70, 99, 100, 100])
    assert convergence_step(model, LEVELS, "acc") == (5, False)
    assert convergence_step(model, LEVELS, "loss") == (15, True)
    vals, why = rcd_metrics(model, oracle, LEVELS, "sgd")
    assert vals["relearn/sgd/rcd_acc"] == pytest.approx(5 / 10) and vals["relearn/sgd/steps_acc"] == 5
    assert vals["relearn/sgd/oracle_steps_acc"] == 10 and vals["relearn/sgd/censored_acc"] == 0
    assert vals["relearn/sgd/rcd_acc_dist"] == pytest.approx(1.0)  # |log2 0.5|
    assert vals["relearn/sgd/rcd"] == pytest.approx(15 / 15) and vals["relearn/sgd/censored"] == 1
    # a rescaled-logit original: every prediction right from step 0 -> T_acc = 0, RCD_acc = 0
    cooled = curve([0.9, 0.5, 0.3, 0.2], [100, 100, 100, 100])
    assert rcd_metrics(cooled, oracle, LEVELS, "sgd")[0]["relearn/sgd/rcd_acc"] == 0.0


def test_repeats_average_and_spread():
    oracle = [curve([2, 1, 1, 1], [60, 98, 99, 99]), curve([2, 1, 1, 1], [60, 70, 98, 99])]  # T_acc 5, 10
    model = [curve([2, 1, 1, 1], [60, 70, 98, 99]), curve([2, 1, 1, 1], [60, 70, 80, 99])]  # T_acc 10, 15
    vals, _ = rcd_metrics(model, oracle, LEVELS, "sgd")
    assert vals["relearn/sgd/oracle_steps_acc"] == 7.5 and vals["relearn/sgd/steps_acc"] == 12.5
    assert vals["relearn/sgd/rcd_acc"] == pytest.approx(12.5 / 7.5)
    assert vals["relearn/sgd/rcd_acc_std"] == pytest.approx(statistics.stdev([10 / 7.5, 15 / 7.5]))


def test_censored_oracle_gives_undefined_not_a_ratio():
    oracle = curve([2, 2, 2, 2], [60, 60, 60, 60])  # never relearns within the budget
    model = curve([2, 1, 0.1, 0.1], [60, 99, 100, 100])
    vals, why = rcd_metrics(model, oracle, LEVELS, "sgd")
    for k in ("relearn/sgd/rcd_acc", "relearn/sgd/rcd", "relearn/sgd/rcd_acc_dist"):
        assert vals[k] is None and "censored" in why[k]
    assert vals["relearn/sgd/oracle_censored_acc"] == 1.0


def test_rcd_undefined_when_nothing_was_memorised():
    flat = Levels(0.3, 0.3 + 1e-4, 100, 100)
    c = curve([0.3], [100.0], steps=[0], max_steps=1)
    vals, why = rcd_metrics(c, c, flat, "sgd")
    assert vals["relearn/sgd/rcd"] is None and "nothing measurable" in why["relearn/sgd/rcd"]
    assert vals["relearn/sgd/rcd_acc"] is None and "accuracy gap" in why["relearn/sgd/rcd_acc"]


def test_recovery_gap_by_hand():
    # L* = 0.2, L_r = 2.1: values clip((L - 0.2) / 1.9, 0, 1)
    c = Curve(steps=[0, 1, 2], loss=[2.1, 1.15, 0.0], acc=[0, 0, 0], max_steps=2)
    assert recovery_gap(c, LEVELS) == pytest.approx((1.0 + 0.5 + 0.0) / 3)


def test_recovery_gap_is_undefined_on_a_truncated_curve_and_the_rcd_is_not():
    full = curve([2.1, 1.15, 0.0, 0.0], [0.0, 50.0, 100.0, 100.0])
    cut = curve([2.1, 1.15, 0.0], [0.0, 50.0, 100.0], steps=(0, 5, 10))
    cut.truncated = True
    levels = Levels(0.0, 2.1, 100.0, 0.0, delta=0.2 / 2.1)
    v_full, _ = rcd_metrics(full, full, levels, "sgd")
    v_cut, why = rcd_metrics(cut, full, levels, "sgd")
    assert v_full["relearn/sgd/recovery_gap"] is not None
    assert v_cut["relearn/sgd/recovery_gap"] is None and "stop_after_tail" in why["relearn/sgd/recovery_gap"]
    assert v_cut["relearn/sgd/rcd"] == v_full["relearn/sgd/rcd"] == 1.0


def test_attack_never_changes_the_attacked_model(digits, tiny_data):
    net, cb = _attack(digits, tiny_data)
    before = copy.deepcopy(net.state_dict())
    curves = cb.run(net)
    after = net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # bit for bit, BatchNorm buffers included
    assert set(curves) == {"sgd", "adam"}
    c = curves["sgd"][0]
    assert c.steps == [0, 3, 6, 9, 12] and len(c.loss) == len(c.acc) == len(c.weight_dist) == 5
    assert c.weight_dist[0] == 0.0 and c.weight_dist[-1] > 0.0
    assert all(math.isfinite(v) for v in c.loss)


def test_same_seed_same_curve(digits, tiny_data):
    net, cb = _attack(digits, tiny_data, seed=7)
    a = cb.run(net)["sgd"][0]
    b = cb.run(net)["sgd"][0]
    _, other = _attack(digits, tiny_data, seed=8)
    c = other.run(net)["sgd"][0]
    assert a.loss == b.loss and convergence_step(a, LEVELS) == convergence_step(b, LEVELS)
    assert a.loss != c.loss


def test_repeats_use_their_own_seeds(digits, tiny_data):
    net, cb = _attack(digits, tiny_data, seed=7, repeats=2)
    runs = cb.run(net)["sgd"]
    assert len(runs) == 2 and runs[0].loss != runs[1].loss  # a relearn set of several batches: orders differ
    _, one = _attack(digits, tiny_data, seed=7)
    assert one.run(net)["sgd"][0].loss == runs[0].loss  # repeat 0 is the single attack
