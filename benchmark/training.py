"""Builds Lightning trainers from ``cfg.trainer`` and runs an ``UnlearnModule`` to the end."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from typing import Any

import lightning as L
import torch
from lightning.pytorch.loggers import Logger
from lightning.pytorch.strategies import DDPStrategy

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


class SpawnDDPStrategy(DDPStrategy):
    """``ddp_spawn`` whose workers destroy their process group when the fit ends.

    Lightning destroys a process group at exit only for NCCL; with gloo a spawned worker
    returns from the fit with the group alive, and its threads (two ``pt_gloo_runloop``
    workers, the ``gloo_tcp_loop`` epoll thread, on rank 0 the ``pt_tcpstore_uv`` store
    server) still run while the interpreter finalizes and libc runs the C++ static
    destructors. A group thread that wakes up then (the loop ticks every 10 ms; the peer
    closes its sockets when it exits) can run into a half-torn-down runtime, the likeliest
    source of the rare ``terminate called without an active exception`` aborts (SIGABRT) of
    workers whose fit had finished. Here each worker waits for the others, so that no rank
    closes its sockets while another still talks, and destroys the group, which joins those
    threads while the interpreter is whole (what PyTorch asks of every trainer process).
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(start_method="spawn", **kwargs)

    def teardown(self) -> None:
        super().teardown()
        # Lightning tears down only after a fit that succeeded on this rank; the launching
        # process never initialises the group, so this is a no-op there
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.barrier()
            torch.distributed.destroy_process_group()


def build_trainer(trainer_cfg: Any, max_epochs: int, callbacks: Sequence[L.Callback] = (),
                  logger: Logger | None = None) -> L.Trainer:
    """A quiet trainer: no checkpoints, no progress bar, no validation loop.

    With ``trainer.devices`` > 1 and ``strategy: auto`` the phase runs under DDP in spawned
    workers (``ddp_spawn``): only the fit is distributed, the runner and the evaluation stay
    in one process, and the trained weights come back to it. Each worker gets its shard of
    every loader (DistributedSampler), so the effective batch is devices x batch_size. The
    workers destroy their process group before they exit (``SpawnDDPStrategy``). ``logger``
    (default: none) is a Lightning logger; under ``ddp_spawn`` it travels to the workers.
    """
    tc = dict(trainer_cfg or {})
    strategy = tc.get("strategy", "auto")
    if strategy == "auto" and world_size(tc) > 1:
        strategy = "ddp_spawn"
    if strategy == "ddp_spawn":
        # the in-memory dataset goes to the workers through shared memory; passing file
        # descriptors fails in some sandboxes and containers ("unable to resize file")
        torch.multiprocessing.set_sharing_strategy("file_system")
        strategy = SpawnDDPStrategy()
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


def fit(module: UnlearnModule, trainer_cfg: Any, callbacks: Sequence[L.Callback] = (),
        logger: Logger | None = None) -> float:
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
