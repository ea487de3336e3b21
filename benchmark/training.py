"""Builds Lightning trainers from ``cfg.trainer`` and runs an ``UnlearnModule`` to the end."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from typing import Any

import lightning as L
import torch

from benchmark.module import UnlearnModule

for _name in ("lightning", "lightning.pytorch", "lightning.fabric", "lightning.pytorch.utilities.rank_zero",
              "lightning.pytorch.accelerators.cuda"):
    logging.getLogger(_name).setLevel(logging.ERROR)
warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
warnings.filterwarnings("ignore", message=r".*number of training batches.*")
warnings.filterwarnings("ignore", message=r".*LeafSpec.*")
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")


def world_size(trainer_cfg: Any) -> int:
    """Processes per training phase: ``trainer.devices`` (an int or a list of device ids)."""
    devices = dict(trainer_cfg or {}).get("devices", 1)
    if isinstance(devices, int):
        return max(1, devices)
    if isinstance(devices, str):
        return max(1, int(devices)) if devices.isdigit() else 1
    return max(1, len(list(devices)))


def build_trainer(trainer_cfg: Any, max_epochs: int, callbacks: Sequence[L.Callback] = (), logger: Any = None) -> L.Trainer:
    """A quiet trainer: no checkpoints, no progress bar, no validation loop.

    With ``trainer.devices`` > 1 and ``strategy: auto`` the phase runs under DDP in spawned
    workers (``ddp_spawn``): only the fit is distributed, the runner and the evaluation stay
    in one process, and the trained weights come back to it. Each worker gets its shard of
    every loader (DistributedSampler), so the effective batch is devices x batch_size.
    """
    tc = dict(trainer_cfg or {})
    strategy = tc.get("strategy", "auto")
    if strategy == "auto" and world_size(tc) > 1:
        strategy = "ddp_spawn"
    if strategy == "ddp_spawn":
        # the in-memory dataset goes to the workers through shared memory; passing file
        # descriptors fails in some sandboxes and containers ("unable to resize file")
        torch.multiprocessing.set_sharing_strategy("file_system")
    return L.Trainer(
        accelerator=tc.get("accelerator", "auto"),
        devices=tc.get("devices", 1),
        strategy=strategy,
        precision=tc.get("precision", "32-true"),
        max_epochs=max(1, int(max_epochs)),
        logger=logger if logger is not None else False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        log_every_n_steps=int(tc.get("log_every_n_steps", 25)),
        limit_val_batches=0,
        callbacks=list(callbacks),
        use_distributed_sampler=True,
    )


def fit(module: UnlearnModule, trainer_cfg: Any, callbacks: Sequence[L.Callback] = (), logger: Any = None) -> float:
    """Runs the unlearning phase; returns its wall seconds (CUDA synchronised, evaluation excluded)."""
    epochs = 1 if module.one_shot else module.total_epochs
    trainer = build_trainer(trainer_cfg, epochs, callbacks, logger)
    trainer.fit(module)
    seconds = trainer.callback_metrics.get("time/unlearn_s")  # set by the module; survives ddp_spawn
    return float(seconds) if seconds is not None else float(module.unlearn_seconds)


def eval_device(trainer_cfg: Any) -> torch.device:
    """The device evaluation runs on: the first GPU when the trainer may use one."""
    acc = str(dict(trainer_cfg or {}).get("accelerator", "auto"))
    if acc in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")
