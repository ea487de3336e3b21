"""Behaviour of neggrad_plus, random_label, l1_sparse, scrub, salun and bad_teacher (tiny digits, CPU)."""

from __future__ import annotations

import copy
import math

import lightning as L
import pytest
import torch

from baselines.bad_teacher import BadTeacher, reinitialised
from baselines.finetune import Finetune
from baselines.l1_sparse import L1Sparse
from baselines.neggrad_plus import NeggradPlus
from baselines.random_label import Phase as RLPhase
from baselines.random_label import RandomLabel
from baselines.salun import Salun, saliency_mask
from baselines.scrub import Scrub
from benchmark.losses import kl_to_teacher, random_other_labels
from benchmark.training import fit

TRAINER = {"accelerator": "cpu", "devices": 1}


class Record(L.Callback):
    """Calls ``fn(module, batch)`` before every training step and keeps the results."""

    def __init__(self, fn) -> None:
        self.fn, self.values = fn, []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.values.append(self.fn(pl_module, batch))


def snapshot(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def assert_same_state(net: torch.nn.Module, expected: dict[str, torch.Tensor]) -> None:
    got = net.state_dict()
    assert set(got) == set(expected)
    for k, v in expected.items():
        assert torch.equal(got[k].cpu(), v), f"{k} changed"


# ---- shared loss terms -------------------------------------------------------------------
def test_kl_to_teacher_is_zero_for_identical_logits():
    logits = torch.randn(5, 10, generator=torch.Generator().manual_seed(0))
    assert kl_to_teacher(logits, logits.clone(), 4.0).abs().item() < 1e-6


def test_kl_to_teacher_is_batchmean_kl_teacher_to_student():
    # row 0: teacher p = (0.9, 0.1), student q = (0.5, 0.5); row 1 identical (KL 0)
    teacher = torch.tensor([[math.log(9.0), 0.0], [1.0, 2.0]])
    student = torch.tensor([[0.0, 0.0], [1.0, 2.0]])
    forward = 0.9 * math.log(0.9 / 0.5) + 0.1 * math.log(0.1 / 0.5)  # KL(p || q) = 0.368
    reverse = 0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(0.5 / 0.1)  # KL(q || p) = 0.511
    got = kl_to_teacher(student, teacher).item()
    assert got == pytest.approx(forward / 2, rel=1e-6)  # divided by the batch (2), not by 2 * 2 elements
    assert got != pytest.approx(reverse / 2, rel=0.1) and got != pytest.approx(forward / 4, rel=0.1)


@pytest.mark.parametrize("t", [2.0, 4.0])
def test_kl_to_teacher_scales_with_t_squared(t):
    gen = torch.Generator().manual_seed(1)
    s, te = torch.randn(8, 10, generator=gen), torch.randn(8, 10, generator=gen)
    assert kl_to_teacher(s, te, t).item() == pytest.approx(t * t * kl_to_teacher(s / t, te / t).item(), rel=1e-5)


def test_random_other_labels_never_true_and_seeded():
    y = torch.arange(10).repeat(100)
    a = random_other_labels(y, 10, torch.Generator().manual_seed(3))
    assert not (a == y).any()
    assert set(a.tolist()) == set(range(10))
    assert torch.equal(a, random_other_labels(y, 10, torch.Generator().manual_seed(3)))


# ---- NegGrad+ and l1-sparse --------------------------------------------------------------
def test_neggrad_plus_with_a_one_is_finetune(tiny_net, tiny_data):
    ng = NeggradPlus(copy.deepcopy(tiny_net), tiny_data, a=1.0)
    ft = Finetune(copy.deepcopy(tiny_net), tiny_data)
    batch = {"retain": next(ng.iterate("retain", train=True)), "forget": next(ng.iterate("forget", train=True))}
    out = ng.unlearn_step(batch)
    assert torch.equal(out["loss"], ft.unlearn_step(batch)["loss"])
    half = NeggradPlus(copy.deepcopy(tiny_net), tiny_data, a=0.5).unlearn_step(batch)
    assert half["loss"].item() == pytest.approx(0.5 * (out["retain_ce"] - out["forget_ce"]).item(), rel=1e-5)


def test_l1_coefficient_decays_linearly_to_zero(tiny_net, tiny_data):
    alpha = 1e-3
    m = L1Sparse(copy.deepcopy(tiny_net), tiny_data, alpha=alpha, epochs=3, batch_size=64)
    rec = Record(lambda mod, batch: mod.l1_coefficient())
    fit(m, TRAINER, [rec])
    coefs = torch.tensor(rec.values, dtype=torch.float64)
    steps = len(coefs)
    assert steps == m.total_steps == 3 * math.ceil(len(tiny_data.retain) / 64)
    assert coefs[0].item() == pytest.approx(alpha)
    assert torch.allclose(coefs.diff(), torch.full((steps - 1,), -alpha / steps, dtype=torch.float64))
    assert m.l1_coefficient(steps) == 0.0  # reaches 0 when the run ends
    out = m.unlearn_step({"retain": next(m.iterate("retain", train=True))})
    assert out["loss"].item() == pytest.approx((out["retain_ce"] + out["l1_coef"] * out["l1"]).item(), rel=1e-6)


# ---- random labels and phases ------------------------------------------------------------
def test_random_label_runs_forget_then_retain_every_epoch(tiny_net, tiny_data):
    m = RandomLabel(copy.deepcopy(tiny_net), tiny_data, epochs=2, batch_size=32)
    rec = Record(lambda mod, batch: (mod.current_epoch, batch["phase"]))
    fit(m, TRAINER, [rec])
    nf, nr = math.ceil(len(tiny_data.forget) / 32), math.ceil(len(tiny_data.retain) / 32)
    one_epoch = [RLPhase.FORGET] * nf + [RLPhase.RETAIN] * nr
    assert rec.values == [(0, p) for p in one_epoch] + [(1, p) for p in one_epoch]


# ---- SCRUB -------------------------------------------------------------------------------
@pytest.mark.parametrize(("msteps", "epochs"), [(2, 3), (1, 3), (3, 3), (0, 2), (2, 1)])
def test_scrub_runs_exactly_msteps_max_phases(tiny_net, tiny_data, msteps, epochs):
    m = Scrub(copy.deepcopy(tiny_net), tiny_data, msteps=msteps, epochs=epochs, batch_size=32)
    fit(m, TRAINER)
    ran = min(msteps, epochs)
    assert m.max_phases == ran
    nf, nr = math.ceil(len(tiny_data.forget) / 32), math.ceil(len(tiny_data.retain) / 32)
    assert m.global_step == ran * nf + epochs * nr


# ---- frozen teachers -----------------------------------------------------------------------
@pytest.mark.parametrize("cls", [Scrub, BadTeacher])
def test_frozen_teachers_are_unchanged(tiny_net, tiny_data, cls):
    theta_o = snapshot(tiny_net)  # digits_cnn: BatchNorm running statistics are buffers
    m = cls(copy.deepcopy(tiny_net), tiny_data, epochs=2, batch_size=32, lr=1e-2)
    fit(m, TRAINER)
    teachers = {"teacher": theta_o} if cls is Scrub else {
        "competent": theta_o, "incompetent": snapshot(reinitialised(tiny_net, tiny_data.seed))}
    for name, expected in teachers.items():
        teacher = getattr(m, name)
        assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
        assert_same_state(teacher, expected)
    moved = m.net.state_dict()
    assert not torch.equal(moved["features.1.running_mean"].cpu(), theta_o["features.1.running_mean"])


def test_bad_teacher_sample_is_all_of_forget_and_a_seeded_retain_share(tiny_net, tiny_data):
    m = BadTeacher(tiny_net, tiny_data, retain_fraction=0.3)
    s = m.sample()
    forget, retain = set(tiny_data.forget.tolist()), set(tiny_data.retain.tolist())
    assert forget <= set(s.tolist())
    assert len(s) == len(forget) + round(0.3 * len(retain)) == len(set(s.tolist()))
    assert set(s.tolist()) - forget <= retain
    assert torch.equal(s, m.sample())


# ---- SalUn ---------------------------------------------------------------------------------
def test_saliency_mask_keeps_the_global_top_share():
    sal = [torch.tensor([[0.1, 5.0], [0.3, 0.2]]), torch.tensor([4.0, 0.0, 3.0])]
    m = saliency_mask(sal, 3 / 7)
    assert m[0].tolist() == [[False, True], [False, False]] and m[1].tolist() == [True, False, True]


def test_salun_mask_is_the_top_saliency_at_the_original_model(tiny_net, tiny_data):
    ratio, bs = 0.5, 32
    net = copy.deepcopy(tiny_net).eval()  # by hand: sum of per-batch CE gradients over D_f, eval mode
    for start in range(0, len(tiny_data.forget), bs):
        idx = tiny_data.forget[start:start + bs]
        x = tiny_data.transform(tiny_data.images[idx], train=False)
        torch.nn.functional.cross_entropy(net(x), tiny_data.labels[idx]).backward()
    sal = torch.cat([p.grad.abs().flatten() for p in net.parameters()])
    threshold = sal.sort(descending=True).values[round(ratio * len(sal)) - 1]
    m = Salun(copy.deepcopy(tiny_net), tiny_data, mask_ratio=ratio, batch_size=bs)
    m.on_unlearn_start()
    got = torch.cat([k.flatten() for k in m.mask])
    assert got.sum() == round(ratio * len(sal))
    assert (sal[got] >= threshold).all() and (sal[~got] <= threshold).all()  # one global threshold
    if (sal == threshold).sum() == 1:  # no tie at the cut: the mask is exactly the top share
        assert torch.equal(got, sal >= threshold)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_salun_mask_holds_under_weight_decay_and_momentum(tiny_net, tiny_data, optimizer):
    ratio = 0.3
    theta_o = [p.detach().clone() for p in tiny_net.parameters()]
    m = Salun(copy.deepcopy(tiny_net), tiny_data, mask_ratio=ratio, epochs=2, batch_size=32, lr=0.05,
              optimizer=optimizer, momentum=0.9, weight_decay=5e-2)
    fit(m, TRAINER)
    n = sum(p.numel() for p in theta_o)
    assert sum(int(k.sum()) for k in m.mask) == round(ratio * n)
    salient_moved = 0
    for before, after, keep in zip(theta_o, m.net.parameters(), m.mask, strict=True):
        assert keep.shape == before.shape
        assert torch.equal(after.detach().cpu()[~keep], before[~keep]), "a non-salient weight moved"
        salient_moved += int((after.detach().cpu()[keep] != before[keep]).sum())
    assert salient_moved > 0.9 * round(ratio * n)
    state = m.trainer.optimizers[0].state
    for p, keep in zip(m.trainable(), m.mask, strict=True):
        for v in state[p].values():
            if torch.is_tensor(v) and v.shape == p.shape:
                assert not v[~keep].any(), "optimiser state kept a non-salient entry"
