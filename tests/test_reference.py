"""Reference models: the cache (a hit reuses the model, a corrupt file is retrained, never
trusted), the recipe trainer, and checkpoints brought from outside (loaded strictly)."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
from omegaconf import OmegaConf

from benchmark.config import compose
from benchmark.data.splits import make_split
from benchmark.data.transforms import BatchTransform
from benchmark.errors import BenchmarkError
from benchmark.io import file_sha256
from benchmark.metrics import Undefined, time_metrics
from benchmark.models import build_model
from benchmark.module import METHODS, UnlearnData
from benchmark.reference import RecipeTraining, get_reference, load_checkpoint, reference_key
from benchmark.training import fit
from tests.conftest import tiny_overrides


def _setup(tiny_cfg, digits):
    split = make_split(digits.train_y.numpy(), "random", 0.1, seed=0, train_subset=300)
    return split, BatchTransform(tuple(digits.mean), tuple(digits.std))


def _same(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return all(torch.equal(sa[k], sb[k]) for k in sa)


def test_cache_hit_returns_identical_model(tiny_cfg, digits):
    split, tf = _setup(tiny_cfg, digits)
    first = get_reference("original", tiny_cfg, digits, split, tf, 0)
    again = get_reference("original", tiny_cfg, digits, split, tf, 0)
    assert not first.cached and again.cached
    assert _same(first.net, again.net)
    assert again.train_seconds == first.train_seconds > 0


def test_original_key_ignores_the_forget_draw_but_oracle_key_does_not(tiny_cfg, digits):
    a = make_split(digits.train_y.numpy(), "random", 0.1, seed=0, train_subset=300)
    b = make_split(digits.train_y.numpy(), "random", 0.3, seed=0, train_subset=300)
    assert reference_key("original", tiny_cfg, a, 0) == reference_key("original", tiny_cfg, b, 0)
    assert reference_key("oracle", tiny_cfg, a, 0) != reference_key("oracle", tiny_cfg, b, 0)


def test_corrupt_or_truncated_cache_is_reported_and_retrained(tiny_cfg, digits, capsys):
    split, tf = _setup(tiny_cfg, digits)
    good = get_reference("oracle", tiny_cfg, digits, split, tf, 0)
    path = Path(tiny_cfg.cache_dir) / "models" / f"{good.key}.pt"
    data = path.read_bytes()
    for damage in (data[: len(data) // 2], data[:100] + b"\x00" * 64 + data[164:]):
        path.write_bytes(damage)
        capsys.readouterr()
        again = get_reference("oracle", tiny_cfg, digits, split, tf, 0)
        out = capsys.readouterr().out
        assert "is corrupt" in out and out.count("\n") == 1
        assert not again.cached
        assert _same(again.net, good.net)  # same seed, same recipe: the same model again
    assert get_reference("oracle", tiny_cfg, digits, split, tf, 0).cached


# ------------------------------------------------------------------ the recipe trainer
def test_references_train_without_the_retrain_plugin(tiny_cfg, digits, monkeypatch):
    """References are trained by reference.py itself: no method plugin can change theta_o."""
    monkeypatch.delitem(METHODS._items, "retrain")
    split, tf = _setup(tiny_cfg, digits)
    ref = get_reference("original", tiny_cfg, digits, split, tf, 0)
    assert not ref.cached and ref.train_seconds > 0
    assert RecipeTraining not in dict(METHODS.items()).values()


def test_recipe_oracle_is_bit_identical_to_the_retrain_method(tiny_cfg, digits):
    """The retrain row reuses the cached oracle, so the two must be the same training."""
    split, tf = _setup(tiny_cfg, digits)
    oracle = get_reference("oracle", tiny_cfg, digits, split, tf, 0)
    L.seed_everything(0, workers=True, verbose=False)
    net = build_model(str(tiny_cfg.model), digits.num_classes, digits.in_channels)
    data = UnlearnData(images=digits.train_x, labels=digits.train_y, forget=torch.as_tensor(split.forget),
                       retain=torch.as_tensor(split.retain), transform=tf, num_classes=digits.num_classes, seed=0)
    module = METHODS.get("retrain")(net, data, reinit=False, scheduler="cosine", optimizer="sgd",
                                    **dict(tiny_cfg.data.recipe))
    L.seed_everything(0, workers=True, verbose=False)
    fit(module, tiny_cfg.trainer)
    assert _same(module.net, oracle.net)


def test_normalisation_override_is_part_of_the_key_and_defaults_keep_theirs(tmp_path, digits):
    split = make_split(digits.train_y.numpy(), "random", 0.1, seed=0, train_subset=300)
    default = compose(tiny_overrides(tmp_path))
    explicit_null = compose(tiny_overrides(tmp_path, "data.normalize.mean=null", "data.normalize.std=null"))
    own = compose(tiny_overrides(tmp_path, "data.normalize.mean=[0.5]", "data.normalize.std=[0.25]"))
    for kind in ("original", "oracle"):
        assert reference_key(kind, default, split, 0) == reference_key(kind, explicit_null, split, 0)
        assert reference_key(kind, default, split, 0) != reference_key(kind, own, split, 0)


# ------------------------------------------------------------------ brought checkpoints
def _trained_net(digits, seed=1):
    torch.manual_seed(seed)
    net = build_model("digits_mlp", digits.num_classes, digits.in_channels)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p))
    return net


def _brought_cfg(tmp_path, kind, path, *extra):
    return compose(tiny_overrides(tmp_path, f"reference.{kind}={path}", *extra))


@pytest.mark.parametrize("wrapped", [False, True])
@pytest.mark.parametrize("kind", ["original", "oracle"])
def test_brought_checkpoint_loads_exactly_with_unknown_train_time(tmp_path, digits, wrapped, kind):
    net = _trained_net(digits)
    path = tmp_path / "theta.pt"
    torch.save({"state_dict": net.state_dict()} if wrapped else net.state_dict(), path)
    cfg = _brought_cfg(tmp_path, kind, path)
    split, tf = _setup(cfg, digits)
    ref = get_reference(kind, cfg, digits, split, tf, 0)
    assert _same(ref.net, net)
    assert ref.train_seconds is None and not ref.cached and ref.checkpoint == str(path)
    assert ref.key.startswith(f"{kind}-file-") and ref.checkpoint_sha256 == file_sha256(path)
    assert ref.key == reference_key(kind, cfg, split, 0)
    assert not (Path(cfg.cache_dir) / "models").exists()  # the user's file is not copied into the cache
    # an unknown retrain time leaves RTE undefined, never a crash
    rte = time_metrics(1.5, ref.train_seconds)["time/rte"]
    assert isinstance(rte, Undefined) and "retrain time" in rte.reason


def test_brought_key_follows_the_file_content_not_the_seed_or_recipe(tmp_path, digits):
    path = tmp_path / "theta.pt"
    torch.save(_trained_net(digits).state_dict(), path)
    cfg = _brought_cfg(tmp_path, "original", path)
    split, _ = _setup(cfg, digits)
    key = reference_key("original", cfg, split, 0)
    assert key == reference_key("original", cfg, split, 5)  # one file serves every seed
    assert key == reference_key("original", _brought_cfg(tmp_path, "original", path, "data.recipe.epochs=9"),
                                split, 0)
    torch.save(_trained_net(digits, seed=2).state_dict(), path)  # same path, new weights
    assert reference_key("original", cfg, split, 0) != key
    assert reference_key("original", _brought_cfg(tmp_path, "original", path, "data.normalize.mean=[0.5]"),
                         split, 0) != reference_key("original", cfg, split, 0)


def _load_error(tmp_path, obj, model="digits_mlp", digits=None) -> str:
    path = tmp_path / "ckpt.pt"
    if isinstance(obj, bytes):
        path.write_bytes(obj)
    else:
        torch.save(obj, path)
    with pytest.raises(BenchmarkError) as e:
        load_checkpoint(build_model(model, 10, 1), path, model)
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg
    return msg


def test_missing_unexpected_and_misshaped_keys_are_named(tmp_path, digits):
    good = _trained_net(digits).state_dict()
    missing = {k: v for k, v in good.items() if k != "fc.bias"}
    msg = _load_error(tmp_path, missing)
    assert "does not match model 'digits_mlp': missing keys [fc.bias]" in msg
    assert msg.endswith("pass model=NAME of the architecture it was trained with")
    assert "unexpected keys [extra.weight]" in _load_error(tmp_path, {**good, "extra.weight": torch.zeros(1)})
    shaped = {**good, "fc.weight": torch.zeros(10, 3)}
    assert "shapes differ (checkpoint vs model) [fc.weight [10, 3] vs [10, 256]]" in _load_error(tmp_path, shaped)
    # another architecture altogether
    assert "does not match model 'digits_cnn'" in _load_error(tmp_path, good, model="digits_cnn")


def test_prefixed_keys_get_a_hint(tmp_path, digits):
    good = _trained_net(digits).state_dict()
    msg = _load_error(tmp_path, {"state_dict": {f"net.{k}": v for k, v in good.items()}})
    assert "its keys carry the prefix 'net.'" in msg


@pytest.mark.parametrize("obj,match", [
    (b"not a checkpoint at all", "cannot read checkpoint"),
    ({"state_dict": {}}, "holds no state_dict"),
    ([torch.zeros(2)], "holds no state_dict"),
    ({"fc.weight": 3}, "holds no state_dict"),
    (OmegaConf.create({"a": 1}), "cannot read checkpoint"),  # arbitrary objects: weights_only refuses them
])
def test_unreadable_checkpoints_fail_in_one_line(tmp_path, digits, obj, match):
    assert match in _load_error(tmp_path, obj)


def test_missing_checkpoint_file_names_the_key(tmp_path, digits):
    # the schema refuses it when the config is composed, before any data loads
    with pytest.raises(BenchmarkError, match=r"reference\.oracle=.* does not exist"):
        _brought_cfg(tmp_path, "oracle", tmp_path / "nope.pt")
    # and the reference stage itself still names it, should the file vanish after composition
    path = tmp_path / "gone.pt"
    path.write_bytes(b"x")
    cfg = _brought_cfg(tmp_path, "oracle", path)
    path.unlink()
    split, tf = _setup(cfg, digits)
    with pytest.raises(BenchmarkError, match=r"reference\.oracle=.*gone\.pt: no such file"):
        get_reference("oracle", cfg, digits, split, tf, 0)

