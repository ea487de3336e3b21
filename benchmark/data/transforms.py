"""Batch transforms on tensors: uint8 -> normalised float, with optional crop+flip.

They run on whatever device the batch is on (Lightning calls them from
``on_after_batch_transfer``), so augmentation costs nothing on the CPU data path
when the model trains on a GPU.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from omegaconf import ListConfig

from benchmark.errors import BenchmarkError

if TYPE_CHECKING:
    from benchmark.data import ImageData


@dataclass(frozen=True)
class BatchTransform:
    """Normalisation plus the standard crop-with-padding and horizontal flip.

    Args:
        mean: per-channel mean in [0, 1] pixel units.
        std: per-channel std.
        crop_pad: padding of the random crop (0 = no crop).
        flip: random horizontal flips.
    """

    mean: tuple[float, ...]
    std: tuple[float, ...]
    crop_pad: int = 0
    flip: bool = False

    @property
    def augments(self) -> bool:
        return self.crop_pad > 0 or self.flip

    def to_unit(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 [B, C, H, W] -> float in [0, 1]."""
        return x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()

    def normalize(self, x01: torch.Tensor) -> torch.Tensor:
        """Float pixels in [0, 1] -> network input (used by pixel-space attacks, e.g. FGSM)."""
        mean = torch.tensor(self.mean, device=x01.device, dtype=x01.dtype).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=x01.device, dtype=x01.dtype).view(1, -1, 1, 1)
        return (x01 - mean) / std

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        """Network input -> float pixels in [0, 1] (the inverse of ``normalize``)."""
        mean = torch.tensor(self.mean, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
        return x * std + mean

    def __call__(self, x: torch.Tensor, train: bool, generator: torch.Generator | None = None) -> torch.Tensor:
        x = self.to_unit(x)
        if train and self.augments:
            x = self.augment(x, generator)
        return self.normalize(x)

    def augment(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        b, _, h, w = x.shape
        if self.crop_pad > 0:
            p = self.crop_pad
            padded = F.pad(x, (p, p, p, p))
            # one random offset per image, gathered with an index grid (no Python loop)
            dy = torch.randint(0, 2 * p + 1, (b,), generator=generator).to(x.device)
            dx = torch.randint(0, 2 * p + 1, (b,), generator=generator).to(x.device)
            rows = (dy[:, None] + torch.arange(h, device=x.device)[None]).view(b, 1, h, 1)
            cols = (dx[:, None] + torch.arange(w, device=x.device)[None]).view(b, 1, 1, w)
            bi = torch.arange(b, device=x.device).view(b, 1, 1, 1)
            ci = torch.arange(x.shape[1], device=x.device).view(1, -1, 1, 1)
            x = padded[bi, ci, rows, cols]
        if self.flip:
            mask = (torch.rand(b, generator=generator) < 0.5).to(x.device)
            x = torch.where(mask.view(b, 1, 1, 1), x.flip(3), x)
        return x


def _channel_values(value: Any, key: str, channels: int, positive: bool) -> tuple[float, ...]:
    """A per-channel list from the config: finite numbers, one per channel."""
    example = ", ".join(["0.5"] * channels)
    if isinstance(value, ListConfig):
        value = list(value)
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise BenchmarkError(f"{key}={value!r} is not a list; give one number per channel, e.g. {key}=[{example}]")
    items = list(value)
    if len(items) != channels:
        raise BenchmarkError(f"{key} has {len(items)} values but the images have {channels} channel(s); "
                             f"give one per channel, e.g. {key}=[{example}]")
    out = []
    for v in items:
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise BenchmarkError(f"{key}={list(items)} holds {v!r}, not a finite number; e.g. {key}=[{example}]")
        if positive and v <= 0:
            raise BenchmarkError(f"{key}={list(items)} holds {v}; a standard deviation must be > 0")
        out.append(float(v))
    return tuple(out)


def normalization(cfg: Any, ds: ImageData) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The per-channel (mean, std) of the network input: ``data.normalize.mean/std`` where
    given (e.g. the constants an outside model was trained with), else the dataset's own.

    Raises:
        BenchmarkError: a value that is not a list of finite numbers, one per channel
            (std > 0).
    """
    norm = cfg.data.get("normalize") or {}
    channels = len(ds.mean)
    mean, std = norm.get("mean"), norm.get("std")
    mean = tuple(ds.mean) if mean is None else _channel_values(mean, "data.normalize.mean", channels, False)
    std = tuple(ds.std) if std is None else _channel_values(std, "data.normalize.std", channels, True)
    return mean, std


def make_transform(cfg: Any, ds: ImageData) -> BatchTransform:
    """The run's batch transform: ``normalization(cfg, ds)`` plus ``data.augment``
    (crop padding and flips)."""
    mean, std = normalization(cfg, ds)
    aug = cfg.data.get("augment") or {}
    return BatchTransform(mean, std, int(aug.get("crop_pad", 0) or 0), bool(aug.get("flip", False)))
