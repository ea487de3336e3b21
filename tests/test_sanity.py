"""The sanity battery (baselines/sanity/): each cheat runs, is left out of ``methods=all``, and
does exactly the harm it claims (tiny digits, CPU)."""

from __future__ import annotations

import copy

import pytest
import torch

from baselines.sanity.cheats import (
    CheatHeadReinit,
    CheatLogitShrink,
    CheatRelabelOneClass,
    CheatTemperature,
    CheatTemperature03,
    CheatWeightNoise,
    last_linear,
)
from benchmark import hparams
from benchmark.config import compose
from benchmark.module import METHODS
from benchmark.stages.plan import resolve_methods
from benchmark.training import fit

from .conftest import tiny_overrides

TRAINER = {"accelerator": "cpu", "devices": 1}
CHEATS = ("cheat_temp_0_5", "cheat_temp_0_3", "cheat_logit_shrink", "cheat_head_reinit", "cheat_weight_noise",
          "cheat_relabel_one_class")


def snapshot(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def logits(net: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    net.eval()
    with torch.no_grad():
        return net(x)


@pytest.fixture
def inputs() -> torch.Tensor:
    return torch.randn(64, 1, 8, 8, generator=torch.Generator().manual_seed(0))


def test_every_cheat_is_registered_and_flagged():
    sanity = {n for n in METHODS.names() if METHODS.get(n).sanity}
    assert sanity == set(CHEATS)
    assert all(METHODS.get(n).one_shot for n in CHEATS if n != "cheat_relabel_one_class")
    assert not METHODS.get("cheat_relabel_one_class").one_shot
    assert METHODS.get("cheat_temp_0_3") is CheatTemperature03 and METHODS.get("cheat_temp_0_5") is CheatTemperature
    assert hparams.resolve("cheat_temp_0_5") == {"scale": 0.5}
    assert hparams.resolve("cheat_temp_0_3") == {"scale": 0.3}
    assert hparams.resolve("cheat_logit_shrink") == {"a": 0.7}
    assert hparams.resolve("cheat_weight_noise") == {"sigma": 1.0}
    assert hparams.resolve("cheat_head_reinit") == {}
    assert hparams.resolve("cheat_relabel_one_class")["target"] == 0


@pytest.mark.parametrize("name", CHEATS)
def test_each_cheat_runs_and_changes_the_weights(tiny_net, tiny_data, name):
    kw = {"epochs": 1, "batch_size": 32} if name == "cheat_relabel_one_class" else {}
    m = METHODS.get(name)(copy.deepcopy(tiny_net), tiny_data, **kw)
    fit(m, TRAINER)
    before, after = snapshot(tiny_net), m.net.state_dict()
    assert set(after) == set(before)
    assert any(not torch.equal(before[k], after[k].cpu()) for k, _ in tiny_net.named_parameters())
    assert all(torch.isfinite(v).all() for v in after.values() if v.is_floating_point())


def test_methods_all_leaves_the_cheats_out_and_a_list_keeps_them(tmp_path):
    every, _ = resolve_methods(compose(tiny_overrides(tmp_path, "methods=all")))
    assert not set(every) & set(CHEATS)
    assert {"original", "retrain", "finetune"} <= set(every)
    fit_random = {n for n in METHODS.names() if not METHODS.get(n).scenarios or "random" in METHODS.get(n).scenarios}
    assert set(every) == {n for n in fit_random if not METHODS.get(n).sanity}
    listed, skipped = resolve_methods(compose(tiny_overrides(tmp_path, "methods=[cheat_temp_0_5,original]")))
    assert listed == ["original", "cheat_temp_0_5"] and skipped == {}


@pytest.mark.parametrize("cls", [CheatTemperature, CheatTemperature03, CheatLogitShrink])
def test_confidence_cheats_keep_every_prediction(tiny_net, tiny_data, inputs, cls):
    m = cls(copy.deepcopy(tiny_net), tiny_data)
    m.unlearn_once()
    before, after = logits(tiny_net, inputs), logits(m.net, inputs)
    assert torch.equal(before.argmax(1), after.argmax(1))
    p0, p1 = before.softmax(1), after.softmax(1)
    assert not torch.allclose(p0, p1, atol=1e-4)
    assert (p1.max(1).values <= p0.max(1).values + 1e-6).all()  # less confident, never more


def test_temperature_scales_the_logits(tiny_net, tiny_data, inputs):
    m = CheatTemperature(copy.deepcopy(tiny_net), tiny_data, scale=0.5)
    m.unlearn_once()
    assert torch.allclose(logits(m.net, inputs), 0.5 * logits(tiny_net, inputs), atol=1e-5)


def test_logit_shrink_moves_logits_towards_their_mean(tiny_net, tiny_data, inputs):
    m = CheatLogitShrink(copy.deepcopy(tiny_net), tiny_data, a=0.7)
    m.unlearn_once()
    z = logits(tiny_net, inputs)
    assert torch.allclose(logits(m.net, inputs), 0.3 * z + 0.7 * z.mean(1, keepdim=True), atol=1e-5)


def test_head_reinit_changes_the_head_only(tiny_net, tiny_data):
    m = CheatHeadReinit(copy.deepcopy(tiny_net), tiny_data)
    m.unlearn_once()
    before, after = snapshot(tiny_net), m.net.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"fc.weight", "fc.bias"}
    assert last_linear(m.net) is m.net.fc
    again = CheatHeadReinit(copy.deepcopy(tiny_net), tiny_data)
    again.unlearn_once()
    assert torch.equal(again.net.fc.weight, m.net.fc.weight)  # seeded by data.seed


def test_weight_noise_is_reproducible_for_a_seed(tiny_net, tiny_data):
    runs = []
    for seed in (0, 0, 1):
        m = CheatWeightNoise(copy.deepcopy(tiny_net), copy.copy(tiny_data), sigma=1.0)
        m.data.seed = seed
        m.unlearn_once()
        runs.append(snapshot(m.net))
    names = [n for n, _ in tiny_net.named_parameters()]
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in names)
    nonzero = [n for n, p in tiny_net.named_parameters() if p.abs().sum() > 0]  # a zero tensor gets std 0
    assert nonzero and all(not torch.equal(runs[0][k], runs[2][k]) for k in nonzero)
    w0, w = tiny_net.state_dict()["fc.weight"], runs[0]["fc.weight"]
    rel = ((w - w0).pow(2).mean().sqrt() / w0.pow(2).mean().sqrt()).item()
    assert 0.8 < rel < 1.2  # std = sigma x the tensor's RMS


def test_relabel_one_class_targets_one_label(tiny_net, tiny_data):
    m = CheatRelabelOneClass(copy.deepcopy(tiny_net), tiny_data, target=2)
    assert m.streams == ("forget",) and m.hparams.target == 2 and m.hparams.epochs == 5
    b = next(m.iterate("forget", train=True))
    out = m.unlearn_step({"forget": b})
    want = torch.nn.functional.cross_entropy(m.net(b.x), torch.full_like(b.y, 2))
    assert out["loss"].item() == pytest.approx(want.item(), rel=1e-6)
    with pytest.raises(ValueError, match="target"):
        CheatRelabelOneClass(copy.deepcopy(tiny_net), tiny_data, target=tiny_data.num_classes)
