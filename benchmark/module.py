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
import os
import time
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, ClassVar, NamedTuple

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import CombinedLoader
from torch import nn
from torch.utils.data import DataLoader

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
    # where loaders gather batches, set by UnlearnModule.setup: the training device, the DDP
    # rank and world size
    device: torch.device = field(default_factory=lambda: torch.device("cpu"), repr=False)
    rank: int = 0
    world: int = 1

    def indices(self, stream: str) -> torch.Tensor:
        if stream == "forget":
            return self.forget
        if stream == "retain":
            return self.retain
        if stream == "all":
            return torch.cat([self.forget, self.retain]).sort().values
        raise KeyError(f"unknown stream {stream!r}; use 'forget', 'retain' or 'all'")


_RESIDENT: dict[tuple[int, str], tuple[Any, torch.Tensor]] = {}  # (id, device) -> (weakref, copy)


def resident(t: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """``t`` on ``device``, copied there once per tensor (the dataset is moved once per run,
    not once per cell or per batch); on its own device ``t`` itself."""
    device = torch.device(device)
    if t.device == device or (device.type == t.device.type and device.index is None):
        return t
    key = (id(t), str(device))
    hit = _RESIDENT.get(key)
    if hit is not None and hit[0]() is t:
        return hit[1]
    for k in [k for k, (ref, _) in _RESIDENT.items() if ref() is None]:  # drop copies of freed tensors
        del _RESIDENT[k]
    copy_ = t.to(device)
    _RESIDENT[key] = (weakref.ref(t), copy_)
    return copy_


def to_device_async(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A small host tensor on ``device`` without a host sync: pinned memory, non-blocking copy
    (a pageable host-to-device copy synchronises the stream)."""
    if device.type != "cuda":
        return t.to(device)
    return t.pin_memory().to(device, non_blocking=True)


class DeviceTransform:
    """``BatchTransform`` for batches that live on the training device, without host syncs.

    The same arithmetic and the same random draws (from the same CPU generator, in the same
    order) as ``BatchTransform.__call__``, so CPU results are bit-identical; on a GPU the
    normalisation constants are device tensors made once and the crop offsets and flip draws
    travel through pinned memory without a sync (``BatchTransform`` builds them on the host
    and copies them synchronously).
    """

    def __init__(self, tf: BatchTransform, device: torch.device, channels_last: bool = False) -> None:
        self.tf, self.device, self.channels_last = tf, device, channels_last
        self.mean = torch.tensor(tf.mean, dtype=torch.float32).view(1, -1, 1, 1).to(device)
        self.std = torch.tensor(tf.std, dtype=torch.float32).view(1, -1, 1, 1).to(device)

    def __call__(self, x: torch.Tensor, train: bool, generator: torch.Generator | None = None) -> torch.Tensor:
        x = self.tf.to_unit(x)
        if train and self.tf.augments:
            x = self._augment(x, generator)
        x = (x - self.mean) / self.std
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def _augment(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        if x.device.type == "cpu":
            return self.tf.augment(x, generator)
        b, _, h, w = x.shape
        dev = x.device
        if self.tf.crop_pad > 0:  # BatchTransform.augment, with the offsets copied without a sync
            p = self.tf.crop_pad
            padded = F.pad(x, (p, p, p, p))
            dy = to_device_async(torch.randint(0, 2 * p + 1, (b,), generator=generator), dev)
            dx = to_device_async(torch.randint(0, 2 * p + 1, (b,), generator=generator), dev)
            rows = (dy[:, None] + torch.arange(h, device=dev)[None]).view(b, 1, h, 1)
            cols = (dx[:, None] + torch.arange(w, device=dev)[None]).view(b, 1, 1, w)
            bi = torch.arange(b, device=dev).view(b, 1, 1, 1)
            ci = torch.arange(x.shape[1], device=dev).view(1, -1, 1, 1)
            x = padded[bi, ci, rows, cols]
        if self.tf.flip:
            mask = to_device_async(torch.rand(b, generator=generator) < 0.5, dev)
            x = torch.where(mask.view(b, 1, 1, 1), x.flip(3), x)
        return x


def _draw_base_seed(generator: torch.Generator | None) -> None:
    # A DataLoader draws a worker base seed from its generator (the global one when it has
    # none) each time it is iterated; drawing it too keeps every later random number, and
    # so every result, bit-identical to the DataLoader path this replaced.
    torch.empty((), dtype=torch.int64).random_(generator=generator)


class IndexBatches:
    """Whole batches of one index set, gathered on the data's device; no per-sample Python.

    Each pass draws like ``DataLoader(RandomSampler(generator=g), batch_size)`` (shuffled)
    or ``SequentialSampler`` (not): the worker base seed, ``torch.randperm(n, generator=g)``,
    and the sampler's discarded remainder permutation when the pass is exhausted, so the
    order and every later draw are those of the DataLoader. The permutation is made on the
    CPU and copied to the device once per pass; a batch is a slice of it (no host sync).

    Under DDP (``data.world > 1``, set by ``UnlearnModule.setup``) a shuffled loader that
    ``distributed`` allows gives each rank its shard as Lightning's ``DistributedSampler`` did
    (seed ``PL_GLOBAL_SEED`` + epoch, padded to a multiple of the world size, strided); the
    fit loop calls ``loader.sampler.set_epoch(epoch)`` before each epoch, as for that sampler.
    """

    def __init__(self, data: UnlearnData, idx: torch.Tensor, batch_size: int, shuffle: bool, seed: int,
                 distributed: bool = True) -> None:
        self.data, self.idx, self.batch_size, self.shuffle = data, torch.as_tensor(idx, dtype=torch.long), int(
            batch_size), shuffle
        self.generator = torch.Generator().manual_seed(seed) if shuffle else None
        self.distributed = distributed
        self.epoch = 0

    @property
    def sampler(self) -> IndexBatches:  # where Lightning looks for ``set_epoch``
        return self

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _world(self) -> int:
        return self.data.world if self.distributed and self.shuffle else 1

    def _n(self) -> int:
        n, w = len(self.idx), self._world()
        return -(-n // w) if w > 1 else n

    def __len__(self) -> int:
        return -(-self._n() // self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        return self._batches()

    def _order(self) -> torch.Tensor:
        n = len(self.idx)
        if self._world() > 1:
            g = torch.Generator().manual_seed(int(os.getenv("PL_GLOBAL_SEED", 0)) + self.epoch)
            perm = torch.randperm(n, generator=g)
            total = self._n() * self.data.world
            perm = torch.cat([perm, perm.repeat(-(-total // n))[: total - n]]) if total > n else perm
            return perm[self.data.rank:total:self.data.world]
        return torch.randperm(n, generator=self.generator)

    def _batches(self) -> Iterator[Batch]:
        _draw_base_seed(self.generator)  # at the first batch: Lightning may call iter() to probe
        n, bs = len(self.idx), self.batch_size
        if n == 0:
            return
        device = self.data.device
        images, labels = resident(self.data.images, device), resident(self.data.labels, device)
        order = self.idx[self._order()] if self.shuffle else self.idx
        order = to_device_async(order, device)
        count = len(order)
        sampler_draws = self.shuffle and self._world() == 1
        for s in range(0, count, bs):
            if sampler_draws and s + bs > count:  # the sampler ran dry before this partial batch
                torch.randperm(n, generator=self.generator)
            idx = order[s:s + bs]
            yield Batch(images[idx], labels[idx], idx)
        if sampler_draws and count % bs == 0:  # ... or when asked for one more
            torch.randperm(n, generator=self.generator)


def make_loader(data: UnlearnData, idx: torch.Tensor, batch_size: int, shuffle: bool, seed: int,
                distributed: bool = True) -> IndexBatches:
    """Batches of ``idx`` (shuffled with a generator seeded by ``seed``), see ``IndexBatches``."""
    return IndexBatches(data, idx, batch_size, shuffle, seed, distributed)


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
        self._loaders: dict[str, IndexBatches] = {}
        self._first_len: int | None = None

    def _loader(self, stream: str) -> IndexBatches:
        if stream not in self._loaders:
            self._loaders[stream] = self.module.loader(stream, distributed=False)
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

# attributes that never hold a parameter, buffer or submodule and are set every step: Lightning sets
# ``_current_fx_name`` around each hook call (~44 times a step), and ``nn.Module.__setattr__``'s
# type checks then cost as much as a small model's forward pass
_PLAIN_ATTRS = frozenset({"_current_fx_name", "_nonfinite", "_checked_step"})


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
    sanity: ClassVar[bool] = False  # a cheat of the sanity battery: never part of methods=all

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
        self._tf: DeviceTransform | None = None
        self.channels_last = False  # set by build_trainer's FastPath callback (trainer.channels_last)
        self._nonfinite: torch.Tensor | None = None  # device flag: a non-finite loss since the last check
        self._checked_step = 0
        if self.one_shot:
            self.automatic_optimization = False

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _PLAIN_ATTRS:
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

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

    def loader(self, stream: str, shuffle: bool = True, batch_size: int | None = None,
               distributed: bool = True) -> IndexBatches:
        """Batches over one stream: ``"forget"``, ``"retain"`` or ``"all"`` (= D), uint8 images
        gathered on the training device; ``distributed``: sharded across DDP ranks."""
        offset = {"forget": 1, "retain": 2, "all": 3}[stream]
        return make_loader(self.data, self.data.indices(stream), batch_size or self.hparams.batch_size,
                           shuffle, seed=self.data.seed * 10 + offset, distributed=distributed)

    def iterate(self, stream: str, train: bool = False, shuffle: bool = False,
                batch_size: int | None = None) -> Iterator[Batch]:
        """Batches of a stream on this module's device, transformed; for hooks that
        loop by themselves (saliency masks, Fisher information)."""
        self.data.device = self.device
        for b in self.loader(stream, shuffle=shuffle, batch_size=batch_size, distributed=False):
            yield b._replace(x=self.transform(b.x, train=train))

    def transform(self, x: torch.Tensor, train: bool) -> torch.Tensor:
        """uint8 images on this module's device -> network input (augmented when ``train``)."""
        if self._tf is None or self._tf.device != x.device or self._tf.tf is not self.data.transform:
            self._tf = DeviceTransform(self.data.transform, x.device, self.channels_last)
        return self._tf(x, train=train, generator=self._aug_gen)

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
    def setup(self, stage: str) -> None:
        strategy = self.trainer.strategy
        self.data.device = strategy.root_device
        self.data.rank, self.data.world = int(self.trainer.global_rank), int(self.trainer.world_size)
        self._tf = None

    def train_dataloader(self) -> Any:
        if self.one_shot:  # a single placeholder step; the work happens in unlearn_once
            return DataLoader([0], batch_size=1)
        if self.phases(0) is not None:
            return Phased(self, self.phases)
        loaders = {s: self.loader(s) for s in self.streams}
        return CombinedLoader(loaders, mode="max_size_cycle")

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        if isinstance(batch, dict):  # the streams' batches were gathered on the device already
            return batch
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if isinstance(batch, dict):
            return {k: self._prepare(v) for k, v in batch.items()}
        return batch

    def _prepare(self, b: Any) -> Any:
        if isinstance(b, Batch) and b.x.dtype == torch.uint8:
            return b._replace(x=self.transform(b.x, train=True))
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
        self.check_finite()
        # callback_metrics travel back from ddp_spawn workers; module attributes do not
        self.trainer.callback_metrics["time/unlearn_s"] = torch.tensor(self.unlearn_seconds)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor | None:
        if self.one_shot:
            stats = self.unlearn_once() or {}
            self.log_dict({f"unlearn/{k}": float(v) for k, v in stats.items()}, on_step=True)
            return None
        out = self.unlearn_step(batch)
        loss = out["loss"]
        # no host sync per step: a device flag collects non-finite losses and is read on the
        # logging steps and at the end (a bad step fails the fit with the range it lies in)
        bad = ~torch.isfinite(loss.detach())
        self._nonfinite = bad if self._nonfinite is None else self._nonfinite | bad
        # logging costs ~1.5 ms a call: log every log_every_n_steps steps (and the first)
        if self.logs_this_step():
            self.check_finite()
            self.log_dict({f"unlearn/{k}": v.detach() if torch.is_tensor(v) else float(v) for k, v in out.items()},
                          on_step=True, on_epoch=False, batch_size=self._batch_size(batch))
        return loss

    def check_finite(self) -> None:
        """Raises ``FloatingPointError`` if a loss since the last check was not finite (one
        host read of the device flag)."""
        flag, first, last = self._nonfinite, self._checked_step, int(self.global_step)
        self._nonfinite, self._checked_step = None, last + 1
        if flag is not None and bool(flag):
            raise FloatingPointError(f"non-finite loss at a step in {first}..{last}; lower the learning rate")

    def _batch_size(self, batch: Any) -> int:
        if isinstance(batch, dict):
            return sum(len(b.y) for b in batch.values() if isinstance(b, Batch)) or 1
        return 1

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
