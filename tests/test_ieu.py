"""IEU (baselines/ieu.py): decay factor, noise reproducibility and scale, BatchNorm buffers,
the sigma schedule, the repair phase and the config-only ablations."""

from __future__ import annotations

import copy
import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

import baselines.ieu as ieu_mod
from baselines.ieu import Ieu, Phase
from benchmark.hparams import resolve as method_config
from benchmark.models import build_model
from benchmark.module import METHODS
from benchmark.training import fit

TRAINER = {"accelerator": "cpu", "devices": 1, "log_every_n_steps": 1}  # log every step's diagnostics
VARIANTS = {"ieu_no_ascent": ("alpha", 0.0), "ieu_no_decay": ("weight_decay", 0.0), "ieu_no_noise": ("sigma", 0.0)}


def params(net) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in net.named_parameters()}


def test_weight_norm_decays_by_exact_factor_without_gradient(tiny_net, tiny_data, monkeypatch):
    # a zero-gradient objective: only the coupled decay moves the weights, p <- (1 - lr*lambda) p
    monkeypatch.setattr(ieu_mod, "ce", lambda logits, y: 0.0 * F.cross_entropy(logits, y))
    lr, lam = 0.1, 0.05
    module = Ieu(copy.deepcopy(tiny_net), tiny_data, epochs=2, lr=lr, momentum=0.0, weight_decay=lam, alpha=0.0,
                 sigma=0.0, batch_size=64)
    before = params(module.net)
    fit(module, TRAINER)
    steps = module.trainer.global_step
    assert steps == 2 * math.ceil(len(tiny_data.retain) / 64)
    factor = (1 - lr * lam) ** steps
    for name, p in module.net.named_parameters():
        torch.testing.assert_close(p.detach(), before[name] * factor, rtol=1e-5, atol=1e-7)
    norm0 = torch.linalg.vector_norm(torch.stack([v.norm() for v in before.values()]))
    assert float(module.trainer.callback_metrics["unlearn/weight_norm"]) == pytest.approx(
        float(norm0) * (1 - lr * lam) ** (steps - 1), rel=1e-5)  # logged at the last step's theta, before it


def test_noise_is_seeded_and_zero_when_sigma_is_zero(tiny_net, tiny_data):
    a = Ieu(copy.deepcopy(tiny_net), tiny_data, sigma=1e-2)
    b = Ieu(copy.deepcopy(tiny_net), tiny_data, sigma=1e-2)
    other = Ieu(copy.deepcopy(tiny_net), dataclasses.replace(tiny_data, seed=1), sigma=1e-2)
    before = params(a.net)
    global_state = torch.get_rng_state()
    for m in (a, b, other):
        m.add_weight_noise(m.noise_scale(0))
    assert torch.equal(torch.get_rng_state(), global_state), "the noise must not draw from the global RNG"
    pa, pb, po = params(a.net), params(b.net), params(other.net)
    assert all(torch.equal(pa[k], pb[k]) for k in pa)
    # every tensor moves except the constant ones (fresh BatchNorm affine: std 0, so no noise)
    assert all(torch.equal(pa[k], before[k]) == bool(before[k].std() == 0) for k in pa)
    assert any(not torch.equal(pa[k], po[k]) for k in pa)
    zero = Ieu(copy.deepcopy(tiny_net), tiny_data, sigma=0.0)
    zero.add_weight_noise(zero.noise_scale(0))
    assert all(torch.equal(v, before[k]) for k, v in params(zero.net).items())


def test_one_step_is_reproducible(tiny_net, tiny_data):
    nets = []
    for _ in range(2):
        torch.manual_seed(123)  # the global RNG differs from the module's: must not matter
        m = Ieu(copy.deepcopy(tiny_net), tiny_data, epochs=1, sigma=1e-2, batch_size=256)
        fit(m, TRAINER)
        assert m.trainer.global_step == 1
        nets.append(params(m.net))
    assert all(torch.equal(nets[0][k], nets[1][k]) for k in nets[0])


def test_noise_scale_is_the_tensor_std(tiny_data):
    net = torch.nn.Linear(400, 500)  # 200k weights: the empirical std is within ~1% of the target
    module = Ieu(net, tiny_data)
    w0, b0 = net.weight.detach().clone(), net.bias.detach().clone()
    module.add_weight_noise(0.1)
    delta = net.weight.detach() - w0
    assert float(delta.mean()) == pytest.approx(0.0, abs=1e-3 * float(w0.std()))
    assert float(delta.std()) == pytest.approx(0.1 * float(w0.std()), rel=0.02)
    assert float((net.bias.detach() - b0).std()) == pytest.approx(0.1 * float(b0.std()), rel=0.2)
    scalar = Ieu(torch.nn.Linear(1, 1, bias=False), tiny_data)  # one element: scale |w|, finite
    w = scalar.net.weight.detach().clone()
    scalar.add_weight_noise(0.1)
    assert torch.isfinite(scalar.net.weight).all() and not torch.equal(scalar.net.weight.detach(), w)


def test_noise_never_touches_batchnorm_statistics(tiny_data):
    torch.manual_seed(0)
    net = build_model("digits_cnn", 10, 1)
    with torch.no_grad():  # BatchNorm affine tensors start constant (std 0, no noise); make them vary
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_()
    net.train()
    net(tiny_data.transform(tiny_data.images[:64], train=False))  # non-trivial running statistics
    bufs = {k: v.clone() for k, v in net.named_buffers()}
    assert {"features.1.running_mean", "features.1.running_var", "features.1.num_batches_tracked"} <= set(bufs)
    module = Ieu(net, tiny_data, sigma=0.05)
    before = params(net)
    module.add_weight_noise(0.05)
    assert all(torch.equal(v, bufs[k]) for k, v in net.named_buffers())
    assert all(not torch.equal(v, before[k]) for k, v in params(net).items())  # BatchNorm affine included


def test_sigma_schedule_and_repair_phase(tiny_net, tiny_data, monkeypatch):
    m = Ieu(copy.deepcopy(tiny_net), tiny_data, epochs=4, sigma=1e-3, repair_epochs=2, repair_weight_decay=1e-4)
    assert [m.noise_scale(e) for e in range(6)] == pytest.approx(
        [1e-3, 1e-3 * (1 + math.cos(math.pi / 4)) / 2, 5e-4, 1e-3 * (1 + math.cos(3 * math.pi / 4)) / 2, 0.0, 0.0])
    assert m.total_epochs == 6 and m.ieu_epochs == 4 and m.hparams.epochs == 4
    assert m.cap == pytest.approx(2 * math.log(10))

    seen = []  # (phase, sigma_e, weight decay, forget CE term used) per step
    real_noise = Ieu.add_weight_noise
    monkeypatch.setattr(Ieu, "add_weight_noise",
                        lambda self, s: (seen.append((self.phase, s, self.trainer.optimizers[0].param_groups[0]
                                                      ["weight_decay"])), real_noise(self, s)))
    m = Ieu(copy.deepcopy(tiny_net), tiny_data, epochs=2, sigma=1e-3, repair_epochs=1, batch_size=128)
    fit(m, TRAINER)
    per_epoch = math.ceil(len(tiny_data.retain) / 128)
    assert m.trainer.current_epoch == 3 and len(seen) == 3 * per_epoch
    assert [s[0] for s in seen] == [Phase.IEU] * 2 * per_epoch + [Phase.REPAIR] * per_epoch
    assert [s[1] for s in seen] == [1e-3] * per_epoch + [5e-4] * per_epoch + [0.0] * per_epoch
    assert [s[2] for s in seen] == [5e-3] * 2 * per_epoch + [5e-4] * per_epoch
    logged = m.trainer.callback_metrics
    for key in ("loss", "retain_ce", "forget_ce", "sigma", "weight_norm", "dist_to_original"):
        assert torch.isfinite(logged[f"unlearn/{key}"]), key
    assert float(logged["unlearn/loss"]) == pytest.approx(float(logged["unlearn/retain_ce"]))  # repair: no ascent
    assert float(logged["unlearn/dist_to_original"]) > 0


def test_ascent_is_capped(tiny_net, tiny_data):
    m = Ieu(copy.deepcopy(tiny_net), tiny_data, alpha=0.5, cap=1e-3)  # cap below any CE: ascent term constant
    batch = {s: next(iter(m.loader(s))) for s in m.streams}
    batch = {k: b._replace(x=tiny_data.transform(b.x, train=False)) for k, b in batch.items()}
    out = m.unlearn_step(batch)
    assert float(out["loss"]) == pytest.approx(float(out["retain_ce"]) - 0.5e-3, abs=1e-6)
    out["loss"].backward()
    grads = {k: p.grad.clone() for k, p in m.net.named_parameters()}
    m.net.zero_grad()
    ce_only = F.cross_entropy(m.net(batch["retain"].x), batch["retain"].y)
    ce_only.backward()
    assert all(torch.allclose(grads[k], p.grad) for k, p in m.net.named_parameters())


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_ablation_variants(name, tiny_net, tiny_data):
    key, value = VARIANTS[name]
    assert METHODS.get(name) is Ieu
    cfg, base = method_config(name), method_config("ieu")
    assert cfg[key] == value and base[key] != value
    assert {k: v for k, v in cfg.items() if k != key} == {k: v for k, v in base.items() if k != key}
    m = METHODS.get(name)(copy.deepcopy(tiny_net), tiny_data, **cfg)
    assert m.hparams[key] == value


def test_yaml_holds_the_constructor_defaults():
    import inspect

    sig = inspect.signature(Ieu.__init__).parameters
    cfg = method_config("ieu")
    assert set(cfg) == {k for k, p in sig.items() if p.kind is p.KEYWORD_ONLY}
    assert all(cfg[k] == sig[k].default for k in cfg)
    assert set(Ieu.search_space) <= set(cfg)
