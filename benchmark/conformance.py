"""The conformance checks every method must pass, in the repository or outside it.

``make test`` runs them over the whole registry (``tests/test_conformance.py``);
``python -m benchmark check METHOD imports=[my_pkg.mod]`` runs them on one method.
On a 300-image digits subset, shrunk to one epoch: the method builds from its resolved
hyperparameters, its ``search_space`` names real arguments, it runs on the CPU with a
finite loss, keeps the network's keys and shapes, changes the weights (except the
no-op ``original``), and leaves a model with finite outputs.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import torch

from benchmark import hparams
from benchmark.errors import BenchmarkError
from benchmark.module import METHODS, UnlearnData, UnlearnModule

NO_OP = ("original",)
SHRINK = {"epochs": 1, "batch_size": 32}
TRAINER = {"accelerator": "cpu", "devices": 1}


@dataclass
class Check:
    name: str
    passed: bool
    detail: str = ""


@lru_cache(maxsize=2)
def tiny_data(scenario: str = "random") -> UnlearnData:
    """300 digits images; random 10% or class 3 forgotten; seed 0."""
    from benchmark.data import load_dataset
    from benchmark.data.splits import make_split
    from benchmark.data.transforms import BatchTransform

    ds = load_dataset("digits")
    if scenario == "class":
        split = make_split(ds.train_y.numpy(), "class", None, seed=0, train_subset=300, classes=[3])
    else:
        split = make_split(ds.train_y.numpy(), "random", 0.1, seed=0, train_subset=300)
    return UnlearnData(images=ds.train_x, labels=ds.train_y, forget=torch.as_tensor(split.forget),
                       retain=torch.as_tensor(split.retain), transform=BatchTransform(tuple(ds.mean), tuple(ds.std)),
                       num_classes=ds.num_classes, scenario=scenario, forget_classes=split.forget_classes, seed=0)


def tiny_net(model: str = "digits_cnn") -> torch.nn.Module:
    from benchmark.models import build_model

    torch.manual_seed(0)
    return build_model(model, 10, 1)


def build(name: str, net: torch.nn.Module, data: UnlearnData, **override: Any) -> UnlearnModule:
    """The method with its resolved defaults, shrunk to one epoch of small batches."""
    cls = METHODS.get(name)
    kwargs = hparams.resolve(name)
    if cls.uses_recipe:
        kwargs = {"reinit": True, "epochs": 1, "lr": 0.05, "batch_size": 32}
    kwargs.update({k: v for k, v in SHRINK.items() if k in kwargs})
    kwargs.update(override)
    return cls(net, data, **kwargs)


def check_method(name: str, model: str = "digits_cnn") -> list[Check]:
    """Runs every conformance check on one registered method; never raises for the method's faults."""
    from benchmark.evaluate import predict
    from benchmark.training import fit

    cls = METHODS.get(name)
    out: list[Check] = []
    try:
        hparams.validate_search_space(name, cls)
        out.append(Check("search_space names real arguments", True))
    except BenchmarkError as e:
        out.append(Check("search_space names real arguments", False, str(e)))
    scenario = "class" if cls.scenarios and "random" not in cls.scenarios else "random"
    data = tiny_data(scenario)
    net = tiny_net(model)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    try:
        module = build(name, copy.deepcopy(net), data)
        fit(module, TRAINER)
    except Exception as e:  # noqa: BLE001 - a failing method is a failed check, with the reason
        return [*out, Check("builds and runs one epoch on tiny digits", False, f"{type(e).__name__}: {e}")]
    out.append(Check("builds and runs one epoch on tiny digits", True))
    logged = module.trainer.callback_metrics
    if not module.one_shot:
        loss = logged.get("unlearn/loss")
        ok = loss is not None and bool(torch.isfinite(loss))
        out.append(Check("logs a finite unlearn/loss", ok, "" if ok else f"unlearn/loss = {loss}"))
    after = module.net.state_dict()
    same_keys = set(after) == set(before) and all(after[k].shape == before[k].shape for k in before)
    out.append(Check("keeps the network's keys and shapes", same_keys,
                     "" if same_keys else "the unlearned network's state_dict differs from the original's"))
    # parameters only: BatchNorm statistics move in any train-mode pass, learning or not
    params = [n for n, _ in net.named_parameters()]
    changed = any(not torch.equal(before[k], after[k].cpu()) for k in params
                  if k in after and after[k].shape == before[k].shape)
    if name in NO_OP:
        out.append(Check("leaves the weights unchanged (no-op)", not changed))
    else:
        out.append(Check("changes the weights", changed, "" if changed else
                         f"{name} left every weight exactly as the original's: it unlearns nothing"))
    try:
        pred = predict(module.net, data.images[:64], data.labels[:64], data.transform, torch.device("cpu"))
        finite = bool(torch.isfinite(torch.as_tensor(pred.logits.astype("float32"))).all())
        out.append(Check("leaves a model with finite outputs", finite,
                         "" if finite else "non-finite logits after unlearning"))
    except Exception as e:  # noqa: BLE001
        out.append(Check("leaves a model with finite outputs", False, f"{type(e).__name__}: {e}"))
    return out
