"""Behaviour of boundary shrink/expand, SSD, Fisher forgetting and UNSIR on tiny digits data."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from benchmark.errors import BenchmarkError
from benchmark.hparams import resolve as method_config
from benchmark.importance import diag_fisher
from benchmark.module import METHODS
from benchmark.training import fit

TRAINER = {"accelerator": "cpu", "devices": 1}


def build(name, net, data, tiny_cfg, **over):
    return METHODS.get(name)(net, data, **{**method_config(name, tiny_cfg), **over})


@pytest.fixture
def trained_net(tiny_net, tiny_data):
    """tiny_net fitted to all of D (forget + retain), as an original model is."""
    net = copy.deepcopy(tiny_net)
    idx = torch.cat([tiny_data.forget, tiny_data.retain])
    x, y = tiny_data.transform(tiny_data.images[idx], train=False), tiny_data.labels[idx]
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(60):
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()
    net.eval()
    assert (net(x).argmax(1) == y).float().mean() > 0.95
    return net


def shapes(net: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in net.state_dict().items()}


def test_boundary_expand_trains_an_extra_neuron_then_removes_it(trained_net, tiny_data, tiny_cfg):
    before = shapes(trained_net)
    fc_before = trained_net.fc.weight.detach().clone()
    module = build("boundary_expand", copy.deepcopy(trained_net), tiny_data, tiny_cfg, epochs=2, lr=1e-2)
    fit(module, TRAINER)
    c, width = tiny_data.num_classes, trained_net.fc.in_features
    # the optimiser was built over the widened head, so the shadow neuron was trained
    opt_shapes = [tuple(p.shape) for g in module.trainer.optimizers[0].param_groups for p in g["params"]]
    assert (c + 1, width) in opt_shapes and (c, width) not in opt_shapes
    # ... and it is gone afterwards: same head, same keys and shapes as the original
    assert isinstance(module.net.fc, nn.Linear) and module.net.fc.out_features == c
    assert shapes(module.net) == before
    assert not torch.equal(module.net.fc.weight.detach(), fc_before)  # the real rows were trained
    assert module.net(tiny_data.transform(tiny_data.images[:4], train=False)).shape == (4, c)
    assert module.unlearn_seconds > 0  # the widening is inside the timed span (on_unlearn_setup)


def test_boundary_expand_needs_an_fc_head(tiny_data, tiny_cfg):
    with pytest.raises(BenchmarkError, match="'fc'"):
        build("boundary_expand", nn.Sequential(nn.Flatten(), nn.Linear(64, 10)), tiny_data, tiny_cfg)


def test_ssd_changes_exactly_the_weights_whose_forget_importance_exceeds_the_threshold(
    trained_net, tiny_data, tiny_cfg
):
    module = build("ssd", copy.deepcopy(trained_net), tiny_data, tiny_cfg)
    alpha, lam = module.hparams.alpha, module.hparams.lam
    probe = copy.deepcopy(trained_net)
    i_f = diag_fisher(probe, module.iterate("forget"))
    i_d = diag_fisher(probe, module.iterate("all"))
    before = {k: p.detach().clone() for k, p in trained_net.named_parameters()}
    fit(module, TRAINER)
    n_selected = 0
    for k, p in module.net.named_parameters():
        selected = i_f[k] > alpha * i_d[k]
        changed = p.detach() != before[k]
        assert torch.equal(changed, selected & (before[k] != 0)), k
        factor = (lam * i_d[k] / i_f[k]).clamp(max=1.0)
        torch.testing.assert_close(p.detach()[selected], before[k][selected] * factor[selected])
        n_selected += int(selected.sum())
    total = sum(p.numel() for p in before.values())
    assert 0 < n_selected < total
    assert module.trainer.callback_metrics["unlearn/selected"] == n_selected


def test_unsir_refuses_non_class_scenarios_with_one_line(tiny_net, tiny_data, tiny_class_data, tiny_cfg):
    for data in (tiny_data, dataclasses.replace(tiny_class_data, forget_classes=None)):
        with pytest.raises(BenchmarkError) as err:
            build("unsir", copy.deepcopy(tiny_net), data, tiny_cfg)
        msg = str(err.value)
        assert "\n" not in msg and "forget.scenario=class" in msg


def test_unsir_noise_maximises_the_forgotten_class_error(trained_net, tiny_class_data, tiny_cfg):
    module = build("unsir", copy.deepcopy(trained_net), tiny_class_data, tiny_cfg)
    noise, labels = module.learn_noise()
    assert noise.shape == (module.hparams.noise_per_class, *tiny_class_data.images.shape[1:])
    assert set(labels.tolist()) == {3}
    start = torch.randn(noise.shape, generator=torch.Generator().manual_seed(tiny_class_data.seed))
    with torch.no_grad():
        assert F.cross_entropy(trained_net(noise), labels) > F.cross_entropy(trained_net(start), labels)
    assert all(p.grad is None for p in module.net.parameters())  # only the noise was optimised


def test_fisher_noise_is_reproducible_for_a_seed(trained_net, tiny_data, tiny_cfg):
    def run(data):
        module = build("fisher", copy.deepcopy(trained_net), data, tiny_cfg)
        fit(module, TRAINER)
        return module, {k: p.detach().clone() for k, p in module.net.named_parameters()}

    module, first = run(tiny_data)
    _, again = run(tiny_data)
    _, other = run(dataclasses.replace(tiny_data, seed=1))
    original = dict(trained_net.named_parameters())
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert any(not torch.equal(first[k], other[k]) for k in first)
    assert all(not torch.equal(first[k], original[k]) for k in first)
    # the noise is exactly sqrt(alpha / F_r), capped at max_std, times N(0, 1) from the seed's generator
    std = build("fisher", copy.deepcopy(trained_net), tiny_data, tiny_cfg).noise_std()
    assert all(float(s.max()) <= module.hparams.max_std * (1 + 1e-6) for s in std.values())
    gen = torch.Generator().manual_seed(tiny_data.seed)
    for k, p in original.items():
        torch.testing.assert_close(first[k], p.detach() + std[k] * torch.randn(p.shape, generator=gen))


def test_boundary_shrink_relabels_forget_samples_to_fgsm_neighbours(trained_net, tiny_data, tiny_cfg):
    module = build("boundary_shrink", copy.deepcopy(trained_net), tiny_data, tiny_cfg)
    module.on_unlearn_start()  # freezes the original
    b = next(module.iterate("forget", batch_size=len(tiny_data.forget)))
    clean = trained_net(b.x).argmax(1)
    assert (clean == b.y).all()  # so any relabelling below comes from the FGSM step
    neighbour = module.neighbour_labels(b.x, b.y)
    assert (neighbour != b.y).any()
    # eps is in [0, 1] pixel units: a step under half an 8-bit level rounds back to the image itself
    module.hparams.eps = 1e-3
    assert torch.equal(module.neighbour_labels(b.x, b.y), clean)
