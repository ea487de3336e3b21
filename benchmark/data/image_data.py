"""The in-memory dataset schema, :class:`ImageData`, and the :data:`DATASETS` registry.

Every dataset loads into an :class:`ImageData`: the official training and test sets as
``uint8 [N, C, H, W]`` image tensors with ``int64`` labels, the class names and the
per-channel normalisation constants. Splits into forget/retain sets are index arrays over
``train_x`` built elsewhere; nothing changes labels or order after loading.

A loader is a plain function ``(root, download, cache_dir) -> ImageData`` registered in
:data:`DATASETS` (the loaders live in :mod:`benchmark.data.sources`);
:func:`benchmark.data.load_dataset` is the one entry point.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from benchmark.registry import Registry

# (root, download, cache_dir): the data folder, whether a download is allowed, and the
# folder for decoded-tensor caches (None: no cache)
Loader = Callable[[Path, bool, Path | None], "ImageData"]
DATASETS: Registry[Loader] = Registry("dataset")


@dataclass(eq=False)  # tensors have no single truth value; compare fields explicitly
class ImageData:
    """A dataset decoded into memory.

    Attributes:
        name: Registered dataset name.
        train_x: Official training images, uint8 [N, C, H, W].
        train_y: Training labels, int64 [N], in ``[0, num_classes)``.
        test_x: Official test images, uint8 [M, C, H, W].
        test_y: Test labels, int64 [M].
        classes: Class names; label ``k`` is ``classes[k]``.
        mean: Per-channel mean in [0, 1] pixel units, for normalisation.
        std: Per-channel standard deviation in [0, 1] pixel units.
    """

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    classes: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __post_init__(self) -> None:
        self.classes = [str(c) for c in self.classes]
        self.mean = tuple(float(m) for m in self.mean)
        self.std = tuple(float(s) for s in self.std)
        for split in ("train", "test"):
            x, y = getattr(self, f"{split}_x"), getattr(self, f"{split}_y")
            if x.dtype != torch.uint8 or x.dim() != 4:
                raise ValueError(
                    f"{self.name}: {split}_x must be uint8 [N, C, H, W], got {x.dtype} {tuple(x.shape)}"
                )
            if y.dtype != torch.int64 or y.dim() != 1 or len(y) != len(x):
                raise ValueError(
                    f"{self.name}: {split}_y must be int64 [{len(x)}], got {y.dtype} {tuple(y.shape)}"
                )
            if len(y) and (int(y.min()) < 0 or int(y.max()) >= len(self.classes)):
                raise ValueError(f"{self.name}: {split}_y outside [0, {len(self.classes)})")
        if self.train_x.shape[1:] != self.test_x.shape[1:]:
            raise ValueError(
                f"{self.name}: train and test image shapes differ: {tuple(self.train_x.shape[1:])} vs {tuple(self.test_x.shape[1:])}"
            )
        if not len(self.mean) == len(self.std) == self.in_channels:
            raise ValueError(f"{self.name}: mean/std need {self.in_channels} values each")

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.classes)

    @property
    def in_channels(self) -> int:
        """Image channels (1 or 3)."""
        return int(self.train_x.shape[1])

    @property
    def image_size(self) -> int:
        """Image height in pixels."""
        return int(self.train_x.shape[2])

    def __repr__(self) -> str:
        return (
            f"ImageData(name={self.name!r}, train={tuple(self.train_x.shape)}, "
            f"test={tuple(self.test_x.shape)}, num_classes={self.num_classes})"
        )


def channel_stats(x: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of images, in the [0, 1] units of ``ImageData.mean``/``std``.

    Args:
        x: uint8 images [N, C, H, W].

    Returns:
        ``(mean, std)``, each with C values; std is the population standard deviation.
    """
    total = torch.zeros(x.shape[1], dtype=torch.float64)
    total_sq = torch.zeros_like(total)
    for chunk in x.split(4096):  # float64 copies of a few thousand images at a time
        c = chunk.to(torch.float64)
        total += c.sum(dim=(0, 2, 3))
        total_sq += c.square().sum(dim=(0, 2, 3))
    count = x.shape[0] * x.shape[2] * x.shape[3]
    mean = total / count
    std = (total_sq / count - mean.square()).clamp_min(0).sqrt()
    return tuple((mean / 255).tolist()), tuple((std / 255).tolist())
