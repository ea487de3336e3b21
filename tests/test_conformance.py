"""Every registered method, built from its YAML, on tiny data: a new baseline gets these for free."""

from __future__ import annotations

import copy
import inspect

import numpy as np
import pytest
import torch

from benchmark.config import method_config
from benchmark.evaluate import predict
from benchmark.module import METHODS, UnlearnModule
from benchmark.training import fit
from tests.conftest import CPU_TRAINER, assert_finite

TRAINER = {"accelerator": "cpu", "devices": 1}
CLASS_ONLY = {"unsir"}  # methods that refuse non-class scenarios


def build(name: str, net, data, tiny_cfg) -> UnlearnModule:
    kwargs = method_config(name, tiny_cfg)
    params = inspect.signature(METHODS.get(name).__init__).parameters
    # shrink: one epoch, small batches (only keys the method has)
    for k, v in {"epochs": 1, "batch_size": 32}.items():
        if k in kwargs or k in params:
            kwargs[k] = v
    if METHODS.get(name).uses_recipe:
        kwargs.update({"epochs": 1, "lr": 0.05, "batch_size": 32})
    return METHODS.get(name)(net, data, **kwargs)


@pytest.mark.parametrize("name", METHODS.names())
def test_method_conforms(name, tiny_cfg, tiny_net, tiny_data, tiny_class_data):
    data = tiny_class_data if name in CLASS_ONLY else tiny_data
    before = {k: v.clone() for k, v in tiny_net.state_dict().items()}
    module = build(name, copy.deepcopy(tiny_net), data, tiny_cfg)
    seconds = fit(module, TRAINER)
    assert seconds >= 0.0
    logged = module.trainer.callback_metrics
    if not module.one_shot:
        assert "unlearn/loss" in logged and torch.isfinite(logged["unlearn/loss"])
    after = module.net.state_dict()
    assert set(after) == set(before), "the unlearned network must keep the original's keys and shapes"
    changed = any(not torch.equal(before[k], after[k].cpu()) for k in before if before[k].is_floating_point())
    if name == "original":
        assert not changed
    else:
        assert changed, f"{name} did not change any weight"
    out = predict(module.net, data.images[:64], data.labels[:64], data.transform, torch.device("cpu"))
    assert out.logits.shape == (64, data.num_classes)
    assert_finite(out.logits)
    assert_finite(out.loss)


def test_conformance_covers_every_registered_method():
    assert len(METHODS.names()) >= 4
    assert CPU_TRAINER  # the shrunk configs are CPU-only
    assert np.all([issubclass(METHODS.get(n), UnlearnModule) for n in METHODS.names()])
