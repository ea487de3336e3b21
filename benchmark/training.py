"""Builds Lightning trainers from ``cfg.trainer`` and runs an ``UnlearnModule`` to the end."""

from __future__ import annotations

import logging
import sys
import time
import warnings
from collections.abc import Sequence
from typing import Any, TextIO

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


def _fmt_s(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


class ProgressLine:
    """One terminal line, ``[label] 120/400 steps  ETA 12 s``, redrawn at most four times a
    second once the phase has run ``after_s`` seconds (short phases stay silent), erased at
    the end; silent when the stream is not a terminal (logs, pytest, CI).
    """

    def __init__(self, label: str, stream: TextIO | None = None, after_s: float = 2.0) -> None:
        self.label, self.stream, self.after_s = label, stream or sys.stdout, after_s
        isatty = getattr(self.stream, "isatty", None)
        self.enabled = bool(isatty and isatty())
        self.t0 = time.perf_counter()
        self._last, self._width = 0.0, 0

    def update(self, done: int, total: int) -> None:
        if not self.enabled or done <= 0:
            return
        now = time.perf_counter()
        elapsed = now - self.t0
        if elapsed < self.after_s or now - self._last < 0.25:
            return
        self._last = now
        text = f"[{self.label}] {done}/{total} steps  ETA {_fmt_s(elapsed / done * max(0, total - done))}"
        self.stream.write("\r" + text.ljust(self._width))
        self.stream.flush()
        self._width = len(text)

    def close(self) -> None:
        if self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()
            self._width = 0


class ProgressETA(L.Callback):
    """A ``ProgressLine`` for a fit (reference training, unlearning): batches done of all
    epochs, with an ETA, on rank 0, only on a terminal."""

    def __init__(self, label: str | None = None) -> None:
        self.label, self.line, self.total, self.done = label, None, 0, 0

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            self.line = ProgressLine(self.label or type(pl_module).__name__)
            self.total, self.done = int(trainer.num_training_batches) * int(trainer.max_epochs or 1), 0

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        if self.line is not None:
            self.done += 1
            self.line.update(self.done, self.total)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.line is not None:
            self.line.close()
            self.line = None


class FastPath(L.Callback):
    """``trainer.channels_last`` and ``trainer.compile`` for the unlearning phase.

    channels_last: the network's 4-D weights and the input batches in NHWC (faster
    convolutions on tensor-core GPUs); the same values, so only rounding differs.
    compile: ``torch.compile`` of the network's forward (``nn.Module.compile``, state-dict keys
    unchanged), opt-in: the first steps pay the compilation. Both are undone when training
    ends, so the attack and the evaluation see a plain network.
    """

    def __init__(self, channels_last: bool = False, compile: bool = False) -> None:
        self.channels_last, self.compile = channels_last, compile

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self.channels_last:
            pl_module.net.to(memory_format=torch.channels_last)
            pl_module.channels_last = True

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.compile:
            pl_module.net.compile()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.compile:
            pl_module.net._compiled_call_impl = None  # noqa: SLF001 - nn.Module.compile has no public undo
        if self.channels_last:
            pl_module.net.to(memory_format=torch.contiguous_format)
            pl_module.channels_last = False


def _flag(tc: dict[str, Any], key: str) -> bool:
    value = tc.get(key, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise ValueError(f"trainer.{key}={value!r} is not true or false; use e.g. trainer.{key}=true")
    return value


def build_trainer(trainer_cfg: Any, max_epochs: int, callbacks: Sequence[L.Callback] = (),
                  logger: Logger | None = None) -> L.Trainer:
    """A quiet trainer: no checkpoints, no progress bar, no validation loop.

    With ``trainer.devices`` > 1 and ``strategy: auto`` the phase runs under DDP in spawned
    workers (``ddp_spawn``): only the fit is distributed, the runner and the evaluation stay
    in one process, and the trained weights come back to it. Each worker gets its shard of
    every loader (DistributedSampler), so the effective batch is devices x batch_size. The
    workers destroy their process group before they exit (``SpawnDDPStrategy``). ``logger``
    (default: none) is a Lightning logger; under ``ddp_spawn`` it travels to the workers.
    ``trainer.channels_last`` / ``trainer.compile`` add ``FastPath``; a ``ProgressETA`` line
    shows on a terminal.
    """
    tc = dict(trainer_cfg or {})
    callbacks = [*callbacks, ProgressETA()]
    channels_last, compile_ = _flag(tc, "channels_last"), _flag(tc, "compile")
    if channels_last or compile_:
        callbacks.insert(0, FastPath(channels_last, compile_))
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
