"""The relearning attack: works on a copy, is seeded, and computes T, RCD and the recovery gap
exactly as docs/protocol.md section 4 defines them (the relearn/* metrics of the registry)."""

from __future__ import annotations

import copy
import math

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


def rcd_metrics(curve: Curve, oracle_curve: Curve, levels: Levels, attacker: str) -> tuple[dict, dict]:
    """The registered relearn/<attacker>/* metrics of one curve against the oracle's."""
    ctx = MetricContext(outputs={}, forget_classes=None, num_classes=1, curves={attacker: curve},
                        oracle_curves={attacker: oracle_curve}, levels=levels)
    return compute_metrics(ctx, [n for n in METRICS.names() if n.startswith("relearn/")])


def _attack(digits, tiny_data, seed=0, steps=12):
    f = tiny_data.forget
    target = RelearnTarget(digits.train_x[f], digits.train_y[f], digits.train_x[f], digits.train_y[f],
                           tiny_data.transform)
    torch.manual_seed(0)
    net = build_model("digits_cnn", 10, 1)  # BatchNorm buffers too
    cb = RelearnAttack(target, {"sgd": {"lr": 0.01, "momentum": 0.9, "batch_size": 8},
                                "adam": {"lr": 1e-3, "batch_size": 8}},
                       max_steps=steps, eval_every=3, seed=seed, original_state=trainable_state(net))
    return net, cb


def test_levels_follow_the_protocol():
    assert LEVELS.target_loss == pytest.approx(0.1 + 0.05 * 2.0)
    assert LEVELS.target_acc == pytest.approx(60 + 0.95 * 40)
    assert LEVELS.undefined_reason is None
    assert "nothing measurable" in Levels(0.5, 0.5005, 100, 99).undefined_reason


def test_budget_defaults():
    assert default_budget(4500, 128) == 10 * 36
    assert default_eval_every(360) == 3 and default_eval_every(50) == 1


def test_convergence_step_censoring_and_rcd():
    fast = Curve(steps=[0, 5, 10, 15], loss=[2.0, 1.0, 0.15, 0.1], max_steps=15)
    slow = Curve(steps=[0, 5, 10, 15], loss=[2.1, 1.9, 1.0, 0.2], max_steps=15)
    never = Curve(steps=[0, 5, 10, 15], loss=[3.0, 2.9, 2.5, 2.2], max_steps=15,
                  weight_dist=[0, 0.1, 0.2, 0.3])
    fast.weight_dist = slow.weight_dist = [0.0, 0.1, 0.2, 0.3]
    assert convergence_step(fast, LEVELS) == (10, False)  # 0.15 <= L* = 0.2
    assert convergence_step(slow, LEVELS) == (15, False)
    assert convergence_step(never, LEVELS) == (15, True)
    vals, why = rcd_metrics(fast, slow, LEVELS, "sgd")
    assert vals["relearn/sgd/rcd"] == pytest.approx(10 / 15) and not why
    assert vals["relearn/sgd/weight_dist_at_T"] == 0.2
    vals, _ = rcd_metrics(never, slow, LEVELS, "sgd")
    assert vals["relearn/sgd/censored"] == 1.0 and vals["relearn/sgd/rcd"] == 1.0
    # the oracle against itself: RCD 1; the original (at L_o from step 0): RCD 0
    assert rcd_metrics(slow, slow, LEVELS, "adam")[0]["relearn/adam/rcd"] == 1.0
    at_once = Curve(steps=[0], loss=[0.1], max_steps=15, weight_dist=[0.0])
    assert rcd_metrics(at_once, slow, LEVELS, "adam")[0]["relearn/adam/rcd"] == 0.0


def test_rcd_undefined_when_nothing_was_memorised():
    flat = Levels(0.3, 0.3 + 1e-4, 100, 100)
    c = Curve(steps=[0], loss=[0.3], max_steps=1, weight_dist=[0.0])
    vals, why = rcd_metrics(c, c, flat, "sgd")
    assert vals["relearn/sgd/rcd"] is None and "nothing measurable" in why["relearn/sgd/rcd"]


def test_recovery_gap_by_hand():
    # L* = 0.2, L_r = 2.1: values clip((L - 0.2) / 1.9, 0, 1)
    c = Curve(steps=[0, 1, 2], loss=[2.1, 1.15, 0.0], max_steps=2)
    assert recovery_gap(c, LEVELS) == pytest.approx((1.0 + 0.5 + 0.0) / 3)


def test_attack_never_changes_the_attacked_model(digits, tiny_data):
    net, cb = _attack(digits, tiny_data)
    before = copy.deepcopy(net.state_dict())
    curves = cb.run(net)
    after = net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # bit for bit, BatchNorm buffers included
    assert set(curves) == {"sgd", "adam"}
    c = curves["sgd"]
    assert c.steps == [0, 3, 6, 9, 12] and len(c.loss) == len(c.acc) == len(c.weight_dist) == 5
    assert c.weight_dist[0] == 0.0 and c.weight_dist[-1] > 0.0
    assert all(math.isfinite(v) for v in c.loss)


def test_same_seed_same_curve(digits, tiny_data):
    net, cb = _attack(digits, tiny_data, seed=7)
    a = cb.run(net)["sgd"]
    b = cb.run(net)["sgd"]
    _, other = _attack(digits, tiny_data, seed=8)
    c = other.run(net)["sgd"]
    assert a.loss == b.loss and convergence_step(a, LEVELS) == convergence_step(b, LEVELS)
    assert a.loss != c.loss
