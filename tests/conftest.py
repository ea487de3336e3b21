"""Shared fixtures: the real configs, shrunk to tiny data and few steps (CPU, no logger)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

import baselines  # noqa: E402,F401  - registers every method
from benchmark.config import compose  # noqa: E402
from benchmark.data import load_dataset  # noqa: E402
from benchmark.data.splits import make_split  # noqa: E402
from benchmark.data.transforms import BatchTransform  # noqa: E402
from benchmark.models import build_model  # noqa: E402
from benchmark.module import UnlearnData  # noqa: E402

CPU_TRAINER = ["trainer.accelerator=cpu", "trainer.devices=1"]


@pytest.fixture(scope="session")
def digits():
    return load_dataset("digits")


def tiny_overrides(tmp_path, *extra: str) -> list[str]:
    """The real configs, shrunk: a 300-image digits subset, 3 reference epochs, no logger."""
    return [
        "dataset=digits", "data.train_subset=300", "data.recipe.epochs=3", f"output_dir={tmp_path}/out",
        f"cache_dir={tmp_path}/cache", "logger=none", *CPU_TRAINER, *extra,
    ]


@pytest.fixture
def tiny_cfg(tmp_path):
    return compose(tiny_overrides(tmp_path))


@pytest.fixture
def tiny_data(digits):
    """UnlearnData over a 300-image digits subset, random 10% forget, seed 0."""
    split = make_split(digits.train_y.numpy(), "random", 0.1, seed=0, train_subset=300)
    tf = BatchTransform(tuple(digits.mean), tuple(digits.std))
    return UnlearnData(images=digits.train_x, labels=digits.train_y, forget=torch.as_tensor(split.forget),
                       retain=torch.as_tensor(split.retain), transform=tf, num_classes=digits.num_classes,
                       scenario="random", seed=0)


@pytest.fixture
def tiny_class_data(digits):
    split = make_split(digits.train_y.numpy(), "class", None, seed=0, train_subset=300, classes=[3])
    tf = BatchTransform(tuple(digits.mean), tuple(digits.std))
    return UnlearnData(images=digits.train_x, labels=digits.train_y, forget=torch.as_tensor(split.forget),
                       retain=torch.as_tensor(split.retain), transform=tf, num_classes=digits.num_classes,
                       scenario="class", forget_classes=[3], seed=0)


@pytest.fixture
def tiny_net(digits):
    torch.manual_seed(0)
    return build_model("digits_cnn", digits.num_classes, digits.in_channels)


def assert_finite(arr) -> None:
    assert np.isfinite(np.asarray(arr, dtype=np.float64)).all()
