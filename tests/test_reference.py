"""The reference-model cache: a hit reuses the model, a corrupt file is retrained, never trusted."""

from __future__ import annotations

from pathlib import Path

import torch

from benchmark.data.splits import make_split
from benchmark.data.transforms import BatchTransform
from benchmark.reference import get_reference, reference_key


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
