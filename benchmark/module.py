"""``UnlearnModule``: the one interface every unlearning method implements.

The base class owns the loop: it batches the forget and retain streams, moves
and augments batches on the model's device, builds the optimiser and the
schedule, logs, checks the loss is finite, and times the unlearning phase
(evaluation is never inside it). A method overrides a small hook:

- ``unlearn_step(batch) -> dict`` with a ``"loss"`` key, where ``batch`` maps each
  stream named in ``streams`` (``"forget"``, ``"retain"``) to a ``Batch``;
- or, for one-shot methods (SSD, Fisher), ``unlearn_once()`` with
  ``one_shot = True``;
- optionally ``on_unlearn_setup()`` (before the optimiser is built, e.g. to widen a
  head), ``on_unlearn_start()`` / ``on_unlearn_end()``, ``after_optimizer_step()``
  (masks, noise), all inside the timing;
- multi-phase methods return ``[(phase, stream), ...]`` from ``phases(epoch)``: each
  epoch is then whole passes over those streams in that order, and every batch
  carries ``batch["phase"]`` (an ``Enum`` member).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from typing import Any, ClassVar, NamedTuple

import lightning as L
import torch
from lightning.pytorch.utilities import CombinedLoader
from torch import nn
from torch.utils.data import DataLoader, Dataset

from benchmark.data.transforms import BatchTransform
from benchmark.registry import Registry


class Batch(NamedTuple):
    """A batch of one stream. ``x`` is uint8 on the way in and normalised float after transfer."""

    x: torch.Tensor  # [B, C, H, W]
    y: torch.Tensor  # [B] int64 labels
    idx: torch.Tensor  # [B] indices into the official training set


@dataclass
class UnlearnData:
    """What a method may see: the training images and the forget/retain index arrays.

    Membership is the index arrays; labels are never modified.
    """

    images: torch.Tensor  # uint8 [N, C, H, W], the official training set
    labels: torch.Tensor  # int64 [N]
    forget: torch.Tensor  # int64 indices of D_f
    retain: torch.Tensor  # int64 indices of D_r
    transform: BatchTransform
    num_classes: int
    scenario: str = "random"
    forget_classes: list[int] | None = None
    seed: int = 0

    def indices(self, stream: str) -> torch.Tensor:
        if stream == "forget":
            return self.forget
        if stream == "retain":
            return self.retain
        if stream == "all":
            return torch.cat([self.forget, self.retain]).sort().values
        raise KeyError(f"unknown stream {stream!r}; use 'forget', 'retain' or 'all'")


class _Gather(Dataset):
    """Index dataset whose collate gathers uint8 images from the in-memory tensor."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, idx: torch.Tensor) -> None:
        self.images, self.labels, self.idx = images, labels, idx

    def __len__(self) -> int:
        return len(self.idx)

    def __getitem__(self, i: int) -> int:
        return int(self.idx[i])

    def collate(self, items: list[int]) -> Batch:
        idx = torch.as_tensor(items, dtype=torch.long)
        return Batch(self.images[idx], self.labels[idx], idx)


def make_loader(data: UnlearnData, idx: torch.Tensor, batch_size: int, shuffle: bool, seed: int) -> DataLoader:
    ds = _Gather(data.images, data.labels, idx)
    gen = torch.Generator().manual_seed(seed) if shuffle else None
    return DataLoader(ds, batch_size=batch_size, shuffle=shuffle, generator=gen, collate_fn=ds.collate,
                      num_workers=0, drop_last=False)


class Phased:
    """A training iterable of whole passes over one stream after another, per epoch.

    ``schedule(epoch)`` lists ``(phase, stream)`` pairs; each batch arrives as
    ``{"phase": phase, stream: Batch}``. Lightning reads the length once (epoch 0); a
    later epoch may be shorter (it ends early) but never longer. Each stream's loader
    is built once, so its shuffling generator draws a new order every epoch. Under
    DDP every rank iterates all of it (identical gradients; correct, not faster).
    """

    def __init__(self, module: UnlearnModule, schedule: Any) -> None:
        self.module, self.schedule = module, schedule
        self._loaders: dict[str, DataLoader] = {}
        self._first_len: int | None = None

    def _loader(self, stream: str) -> DataLoader:
        if stream not in self._loaders:
            self._loaders[stream] = self.module.loader(stream)
        return self._loaders[stream]

    def _len(self, epoch: int) -> int:
        return sum(len(self._loader(s)) for _, s in self.schedule(epoch))

    def __len__(self) -> int:
        if self._first_len is None:
            self._first_len = self._len(0)
        return self._first_len

    def __iter__(self) -> Iterator[dict[str, Any]]:
        epoch = self.module.current_epoch
        if self._len(epoch) > len(self):
            raise ValueError(f"epoch {epoch} of the phase schedule is longer than epoch 0; Lightning would cut it")
        for phase, stream in self.schedule(epoch):
            for b in self._loader(stream):
                yield {"phase": phase, stream: b}


METHODS: Registry = Registry("method")


class UnlearnModule(L.LightningModule):
    """Base class of every unlearning method.

    Args:
        net: the network to unlearn, a copy of the original model theta_o; it is changed in place.
        data: the forget/retain data.
        epochs: passes over the epoch-defining stream (the longest of ``streams``).
        lr: learning rate.
        optimizer: ``"sgd"`` or ``"adam"``.
        momentum: SGD momentum.
        weight_decay: coupled (L2) weight decay.
        batch_size: per-stream batch size.
        scheduler: ``"cosine"`` (per step, to 0) or ``"constant"``.
    """

    streams: ClassVar[tuple[str, ...]] = ("retain",)
    scenarios: ClassVar[tuple[str, ...] | None] = None  # forget scenarios it supports (None = all)
    one_shot: ClassVar[bool] = False
    uses_recipe: ClassVar[bool] = False  # retrain: epochs/lr/... come from the dataset's recipe

    def __init__(self, net: nn.Module, data: UnlearnData, *, epochs: int = 10, lr: float = 0.01,
                 optimizer: str = "sgd", momentum: float = 0.9, weight_decay: float = 5e-4,
                 batch_size: int = 128, scheduler: str = "cosine") -> None:
        super().__init__()
        if optimizer not in ("sgd", "adam"):
            raise ValueError(f"optimizer must be 'sgd' or 'adam', not {optimizer!r}")
        if scheduler not in ("cosine", "constant"):
            raise ValueError(f"scheduler must be 'cosine' or 'constant', not {scheduler!r}")
        self.save_hyperparameters(ignore=["net", "data"])
        self.net = net
        self.data = data
        self.unlearn_seconds = 0.0
        self._frozen: set[str] = set()
        self._t0 = 0.0
        self._aug_gen = torch.Generator().manual_seed(data.seed)
        if self.one_shot:
            self.automatic_optimization = False

    # ---- hooks a method overrides ---------------------------------------------------
    def unlearn_step(self, batch: dict[str, Batch]) -> dict[str, torch.Tensor]:
        """One optimisation step's objective. Returns a dict with at least ``"loss"``."""
        raise NotImplementedError

    def unlearn_once(self) -> dict[str, float]:
        """The whole update of a one-shot method (``one_shot = True``)."""
        raise NotImplementedError

    def phases(self, epoch: int) -> list[tuple[Enum, str]] | None:
        """Multi-phase methods: the (phase, stream) passes of ``epoch``; None = combined streams."""
        return None

    def on_unlearn_setup(self) -> None:
        """Changes to the network before the optimiser is built (timed), e.g. an extra neuron."""

    def on_unlearn_start(self) -> None:
        """Set-up that counts as unlearning time (masks, teachers, noise)."""

    def after_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Runs after every optimiser step (timed): hard masks, weight noise."""

    def on_unlearn_end(self) -> None:
        """Clean-up that counts as unlearning time (removing an extra neuron)."""

    # ---- shared helpers -------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def freeze_copy(self, name: str, module: nn.Module | None = None) -> nn.Module:
        """Registers a frozen copy (default: of ``self.net``): eval mode, no gradients,
        BatchNorm statistics fixed. It stays in eval mode when Lightning calls ``train()``."""
        frozen = copy.deepcopy(module if module is not None else self.net)
        frozen.eval()
        for p in frozen.parameters():
            p.requires_grad_(False)
        setattr(self, name, frozen)
        self._frozen.add(name)
        return frozen

    def train(self, mode: bool = True) -> UnlearnModule:
        super().train(mode)
        for name in self._frozen:
            getattr(self, name).eval()
        return self

    def loader(self, stream: str, shuffle: bool = True, batch_size: int | None = None) -> DataLoader:
        """A loader over one stream: ``"forget"``, ``"retain"`` or ``"all"`` (= D)."""
        offset = {"forget": 1, "retain": 2, "all": 3}[stream]
        return make_loader(self.data, self.data.indices(stream), batch_size or self.hparams.batch_size,
                           shuffle, seed=self.data.seed * 10 + offset)

    def iterate(self, stream: str, train: bool = False, shuffle: bool = False,
                batch_size: int | None = None) -> Iterator[Batch]:
        """Batches of a stream on this module's device, transformed; for hooks that
        loop by themselves (saliency masks, Fisher information)."""
        for b in self.loader(stream, shuffle=shuffle, batch_size=batch_size):
            b = Batch(*(t.to(self.device) for t in b))
            yield b._replace(x=self.data.transform(b.x, train=train, generator=self._aug_gen))

    @property
    def total_epochs(self) -> int:
        """Epochs the trainer runs; multi-stage methods (IEU repair, UNSIR) override it."""
        return int(self.hparams.epochs)

    def logs_this_step(self) -> bool:
        """Whether this step's dict is logged (every ``log_every_n_steps``; always without a
        trainer): expensive diagnostics can be skipped on the other steps."""
        trainer = self._trainer
        return trainer is None or self.global_step % max(1, trainer.log_every_n_steps) == 0

    def trainable(self) -> list[nn.Parameter]:
        return [p for p in self.net.parameters() if p.requires_grad]

    # ---- Lightning plumbing ---------------------------------------------------------
    def train_dataloader(self) -> Any:
        if self.one_shot:  # a single placeholder step; the work happens in unlearn_once
            return DataLoader([0], batch_size=1)
        if self.phases(0) is not None:
            return Phased(self, self.phases)
        loaders = {s: self.loader(s) for s in self.streams}
        return CombinedLoader(loaders, mode="max_size_cycle")

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if isinstance(batch, dict):
            return {k: self._prepare(v) for k, v in batch.items()}
        return batch

    def _prepare(self, b: Any) -> Any:
        if isinstance(b, Batch) and b.x.dtype == torch.uint8:
            return b._replace(x=self.data.transform(b.x, train=True, generator=self._aug_gen))
        return b

    def configure_optimizers(self) -> Any:
        hp = self.hparams
        params = self.trainable()
        if hp.optimizer == "sgd":
            opt = torch.optim.SGD(params, lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay)
        else:
            opt = torch.optim.Adam(params, lr=hp.lr, weight_decay=hp.weight_decay)
        if hp.scheduler == "constant" or self.one_shot:
            return opt
        total = max(1, int(self.trainer.estimated_stepping_batches))
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total, eta_min=0.0)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def configure_model(self) -> None:
        # Lightning: setup -> configure_model -> configure_optimizers -> on_train_start.
        # The clock starts here so that on_unlearn_setup is timed too.
        if self._t0 == 0.0:
            self._sync()
            self._t0 = time.perf_counter()
            self.on_unlearn_setup()

    def on_train_start(self) -> None:
        if self._t0 == 0.0:
            self._sync()
            self._t0 = time.perf_counter()
        # a network that arrives in eval mode (a checkpoint loaded elsewhere) unlearns in train
        # mode, BatchNorm statistics and dropout included; frozen copies stay in eval mode
        self.train()
        self.on_unlearn_start()

    def optimizer_step(self, epoch: int, batch_idx: int, optimizer: Any, optimizer_closure: Any = None) -> None:
        super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)
        self.after_optimizer_step(optimizer)

    def on_train_end(self) -> None:
        self.on_unlearn_end()
        self._sync()
        self.unlearn_seconds = time.perf_counter() - self._t0
        self._t0 = 0.0
        # callback_metrics travel back from ddp_spawn workers; module attributes do not
        self.trainer.callback_metrics["time/unlearn_s"] = torch.tensor(self.unlearn_seconds)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor | None:
        if self.one_shot:
            stats = self.unlearn_once() or {}
            self.log_dict({f"unlearn/{k}": float(v) for k, v in stats.items()}, on_step=True)
            return None
        out = self.unlearn_step(batch)
        loss = out["loss"]
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite loss {loss.item()} at step {self.global_step}; "
                                     "lower the learning rate")
        # logging costs ~1.5 ms a call: log every log_every_n_steps steps (and the first)
        if self.logs_this_step():
            self.log_dict({f"unlearn/{k}": v.detach() if torch.is_tensor(v) else float(v) for k, v in out.items()},
                          on_step=True, on_epoch=False, batch_size=self._batch_size(batch))
        return loss

    def _batch_size(self, batch: Any) -> int:
        if isinstance(batch, dict):
            return sum(len(b.y) for b in batch.values() if isinstance(b, Batch)) or 1
        return 1

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
