"""The registered dataset loaders and :func:`load_dataset`, the one entry point.

Registered names:

* ``digits``: scikit-learn's 8x8 digits (shipped in the wheel, never
  downloaded). It has no official test split, so a fixed stratified 30% test
  split (``train_test_split(test_size=0.3, stratify=y, random_state=0)``;
  1257 train / 540 test images) is used, each part kept in the original order.
  Pixel values 0..16 are scaled to 0..255 as ``round(x * 255 / 16)``.
* ``cifar10``: torchvision's ``cifar-10-batches-py/`` under the root, or a
  class-folder tree ``train/<class>/*.jpg`` and ``test/<class>/*.jpg`` (also
  one folder below the root). Labels follow the sorted class names, which is
  torchvision's order, so a label means the same class in both layouts.
* ``cifar100``, ``svhn``, ``mnist``, ``fashion_mnist``: torchvision's layouts
  under the root, downloaded only when ``download`` is true. SVHN uses the
  ``train`` and ``test`` splits (not ``extra``), labels 0-9.
* ``imagefolder``: any ``train/<class>/<image>`` plus ``test/`` (or ``val/``)
  tree of same-sized images; RGB unless every image is grayscale.
* ``tiny_imagenet``: the extracted ``tiny-imagenet-200`` folder; its labelled
  ``val`` split serves as the test set. Classes are the sorted WordNet ids.

Datasets read from image files are decoded by :mod:`benchmark.data.decode` and, given a
``cache_dir``, kept by :mod:`benchmark.data.cache`. Missing data and failed downloads are
one-line :class:`BenchmarkError` messages that name the root and the fix.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torchvision import datasets as tv_datasets

from benchmark.data.cache import cached_decode
from benchmark.data.decode import (
    ImageFiles,
    decode_images,
    find_split_root,
    find_test_dir,
    find_tiny_imagenet,
    list_split_folders,
    list_tiny_imagenet,
    one_line,
)
from benchmark.data.image_data import DATASETS, ImageData, channel_stats
from benchmark.errors import BenchmarkError

log = logging.getLogger(__name__)

# Published per-channel statistics of the training sets, in [0, 1] pixel units.
_CIFAR10_STATS = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
_CIFAR100_STATS = ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))
_SVHN_STATS = ((0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970))
_MNIST_STATS = ((0.1307,), (0.3081,))
_FASHION_MNIST_STATS = ((0.2860,), (0.3530,))
_TINY_IMAGENET_STATS = ((0.4802, 0.4481, 0.3975), (0.2770, 0.2691, 0.2821))

CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
_TINY_IMAGENET_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
_TINY_IMAGENET_MD5 = "90528d7ca1a48142e341f4ef8d21d0de"


def load_dataset(
    name: str,
    root: str | os.PathLike[str] | None = None,
    download: bool = False,
    cache_dir: str | os.PathLike[str] | None = None,
) -> ImageData:
    """Loads a registered dataset into memory.

    Args:
        name: Registered dataset name (see ``DATASETS.names()``).
        root: Folder holding the data; ``data/<name>`` under the working directory when None.
        download: Whether torchvision-style datasets may be downloaded into ``root``.
        cache_dir: If given, datasets decoded from image files keep their decoded tensors in
            ``<cache_dir>/decoded/`` so that later loads skip decoding.

    Returns:
        The decoded dataset.

    Raises:
        BenchmarkError: Unknown name, missing or unreadable data, or a failed download.
    """
    loader = DATASETS.get(name)
    root_path = Path(root if root is not None else Path("data") / name).expanduser().absolute()
    cache = Path(cache_dir).expanduser().absolute() if cache_dir is not None else None
    return loader(root_path, download, cache)


def _not_found(name: str, root: Path, looked_for: str, can_download: bool = True) -> BenchmarkError:
    fix = "extract it there, pass data.root=PATH"
    fix += ", or allow the download with data.download=true" if can_download else " instead"
    return BenchmarkError(
        f"dataset {name!r} not found under {root} (looked for {looked_for}); {fix}"
    )


# --------------------------------------------------------------------------- class folders


def _decode_class_folders(
    name: str,
    data_dir: Path,
    cache_dir: Path | None,
    mode: Literal["RGB", "auto"],
    stats: tuple[tuple[float, ...], tuple[float, ...]] | None = None,
    expected_classes: Sequence[str] | None = None,
) -> ImageData:
    """Decodes ``data_dir/train/<class>/`` and ``data_dir/{test,val}/<class>/`` (cached)."""
    test_dir = find_test_dir(name, data_dir)

    def build() -> ImageData:
        files = list_split_folders(name, data_dir, test_dir, expected_classes)
        return _decode_files(name, data_dir, files, mode, stats)

    return cached_decode(cache_dir, name, data_dir, build)


def _decode_files(
    name: str,
    data_dir: Path,
    files: ImageFiles,
    mode: Literal["RGB", "auto"],
    stats: tuple[tuple[float, ...], tuple[float, ...]] | None,
) -> ImageData:
    """Decodes listed files; mean/std are the training images' own unless ``stats`` are given."""
    n = len(files.train_paths)
    log.info("decoding %d images under %s", n + len(files.test_paths), data_dir)
    x = decode_images(files.train_paths + files.test_paths, mode)
    train_x, test_x = x[:n], x[n:]
    mean, std = stats if stats is not None else channel_stats(train_x)
    return ImageData(
        name=name,
        train_x=train_x.clone(),
        train_y=torch.tensor(files.train_labels, dtype=torch.int64),
        test_x=test_x.clone(),
        test_y=torch.tensor(files.test_labels, dtype=torch.int64),
        classes=files.classes,
        mean=mean,
        std=std,
    )


# --------------------------------------------------------------------------- torchvision datasets


def _torchvision_splits(
    name: str,
    root: Path,
    download: bool,
    factory: Callable[[bool], Any],
    present: bool,
    looked_for: str,
    by_hand: str,
) -> tuple[Any, Any]:
    """Builds torchvision's (train, test) datasets, turning its failures into one-line errors.

    Args:
        name: Registered name, for messages.
        root: The data root.
        download: Whether torchvision may download.
        factory: ``factory(train) -> dataset``.
        present: Whether the expected files are already there.
        looked_for: What was looked for, for the not-found message.
        by_hand: How to provide the data without network, for the download-failed message.
    """
    if not present and not download:
        raise _not_found(name, root, looked_for)
    try:
        return factory(True), factory(False)
    except Exception as exc:  # torchvision and urllib raise many types; all end here
        if download and not present:
            raise BenchmarkError(
                f"downloading dataset {name!r} into {root} failed ({one_line(exc)}); "
                f"without network, {by_hand}, or pass data.root=PATH"
            ) from exc
        raise BenchmarkError(
            f"dataset {name!r} under {root} could not be read ({one_line(exc)}); extract it "
            "again, or delete it and allow the download with data.download=true"
        ) from exc


def _from_hwc(data: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(data)).permute(0, 3, 1, 2).contiguous()


def _labels(targets: Any) -> torch.Tensor:
    return torch.as_tensor(np.asarray(targets), dtype=torch.int64).clone()


def _cifar(
    name: str, cls: type, root: Path, download: bool, folder: str, url: str, stats: Any
) -> ImageData:
    if root.name == folder and not (root / folder).is_dir():
        root = root.parent  # pointed at cifar-10-batches-py/ itself
    train, test = _torchvision_splits(
        name,
        root,
        download,
        lambda train: cls(str(root), train=train, download=download),
        present=(root / folder).is_dir(),
        looked_for=f"{folder}/",
        by_hand=f"download {url} and extract it into {root}",
    )
    return ImageData(
        name=name,
        train_x=_from_hwc(train.data),
        train_y=_labels(train.targets),
        test_x=_from_hwc(test.data),
        test_y=_labels(test.targets),
        classes=list(train.classes),
        mean=stats[0],
        std=stats[1],
    )


@DATASETS.register("cifar10")
def cifar10(root: Path, download: bool, cache_dir: Path | None) -> ImageData:
    """CIFAR-10 from torchvision's ``cifar-10-batches-py/`` or a ``train/<class>/`` JPEG tree."""
    if not (root / "cifar-10-batches-py").is_dir() and root.name != "cifar-10-batches-py":
        data_dir = find_split_root(root)
        if data_dir is not None:
            return _decode_class_folders(
                "cifar10",
                data_dir,
                cache_dir,
                "RGB",
                _CIFAR10_STATS,
                expected_classes=CIFAR10_CLASSES,
            )
        if not download:
            raise _not_found("cifar10", root, "cifar-10-batches-py/ or train/<class>/ folders")
    return _cifar(
        "cifar10",
        tv_datasets.CIFAR10,
        root,
        download,
        "cifar-10-batches-py",
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        _CIFAR10_STATS,
    )


@DATASETS.register("cifar100")
def cifar100(root: Path, download: bool, cache_dir: Path | None) -> ImageData:
    """CIFAR-100 (fine labels) from torchvision's ``cifar-100-python/``."""
    return _cifar(
        "cifar100",
        tv_datasets.CIFAR100,
        root,
        download,
        "cifar-100-python",
        "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        _CIFAR100_STATS,
    )


@DATASETS.register("svhn")
def svhn(root: Path, download: bool, cache_dir: Path | None) -> ImageData:
    """SVHN ``train`` (73,257) and ``test`` (26,032) splits, labels 0-9 (``extra`` unused)."""
    files = ("train_32x32.mat", "test_32x32.mat")
    train, test = _torchvision_splits(
        "svhn",
        root,
        download,
        lambda train: tv_datasets.SVHN(
            str(root), split="train" if train else "test", download=download
        ),
        present=all((root / f).is_file() for f in files),
        looked_for=" and ".join(files),
        by_hand=f"download {' and '.join(files)} from http://ufldl.stanford.edu/housenumbers/ "
        f"into {root}",
    )
    return ImageData(
        name="svhn",
        train_x=torch.from_numpy(train.data).contiguous(),  # already [N, 3, 32, 32]
        train_y=_labels(train.labels),  # torchvision maps SVHN's label 10 to 0
        test_x=torch.from_numpy(test.data).contiguous(),
        test_y=_labels(test.labels),
        classes=[str(i) for i in range(10)],
        mean=_SVHN_STATS[0],
        std=_SVHN_STATS[1],
    )


def _mnist_like(
    name: str, cls: type, root: Path, download: bool, url: str, classes: list[str], stats: Any
) -> ImageData:
    folder = cls.__name__  # torchvision keeps the files in <root>/<class name>/raw/
    if root.name == folder and not (root / folder).is_dir() and (root / "raw").is_dir():
        root = root.parent  # pointed at MNIST/ itself
    train, test = _torchvision_splits(
        name,
        root,
        download,
        lambda train: cls(str(root), train=train, download=download),
        present=(root / folder / "raw").is_dir(),
        looked_for=f"{folder}/raw/",
        by_hand=f"download the four idx files from {url} and gunzip them into "
        f"{root / folder / 'raw'}",
    )
    return ImageData(
        name=name,
        train_x=train.data.unsqueeze(1).contiguous(),  # [N, 1, 28, 28]
        train_y=train.targets.to(torch.int64),
        test_x=test.data.unsqueeze(1).contiguous(),
        test_y=test.targets.to(torch.int64),
        classes=classes,
        mean=stats[0],
        std=stats[1],
    )


@DATASETS.register("mnist")
def mnist(root: Path, download: bool, cache_dir: Path | None) -> ImageData:
    """MNIST from torchvision's ``MNIST/raw/``: 28x28, one channel, classes "0".."9"."""
    return _mnist_like(
        "mnist",
        tv_datasets.MNIST,
        root,
        download,
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        [str(i) for i in range(10)],
        _MNIST_STATS,
    )


@DATASETS.register("fashion_mnist")
def fashion_mnist(root: Path, download: bool, cache_dir: Path | None) -> ImageData:
    """Fashion-MNIST from torchvision's ``FashionMNIST/raw/``: 28x28, one channel."""
    return _mnist_like(
        "fashion_mnist",
        tv_datasets.FashionMNIST,
        root,
        download,
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        list(tv_datasets.FashionMNIST.classes),
        _FASHION_MNIST_STATS,
    )


# --------------------------------------------------------------------------- other datasets


@DATASETS.register("digits")
def digits(root: Path, download: bool, cache_dir: Path | None) -> ImageData:
    """scikit-learn's 8x8 digits with a fixed stratified 30% test split (``root`` unused)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    pixels = np.rint(bunch.images * (255 / 16)).astype(np.uint8)  # [1797, 8, 8], 0..16 -> 0..255
    x = torch.from_numpy(pixels).unsqueeze(1)
    y = torch.from_numpy(bunch.target.astype(np.int64))
    train_idx, test_idx = train_test_split(
        np.arange(len(y)), test_size=0.3, random_state=0, stratify=bunch.target
    )
    train_idx, test_idx = torch.from_numpy(np.sort(train_idx)), torch.from_numpy(np.sort(test_idx))
    train_x = x[train_idx].contiguous()
    mean, std = channel_stats(train_x)
    return ImageData(
        name="digits",
        train_x=train_x,
        train_y=y[train_idx],
        test_x=x[test_idx].contiguous(),
        test_y=y[test_idx],
        classes=[str(i) for i in range(10)],
        mean=mean,
        std=std,
    )


@DATASETS.register("imagefolder")
def imagefolder(root: Path, download: bool, cache_dir: Path | None) -> ImageData:
    """Any ``train/<class>/<image>`` plus ``test/`` (else ``val/``) tree of same-sized images."""
    data_dir = find_split_root(root)
    if data_dir is None:
        raise _not_found(
            "imagefolder",
            root,
            "train/<class>/ and test/<class>/ or val/<class>/ folders",
            can_download=False,
        )
    return _decode_class_folders("imagefolder", data_dir, cache_dir, "auto")


@DATASETS.register("tiny_imagenet")
def tiny_imagenet(root: Path, download: bool, cache_dir: Path | None) -> ImageData:
    """Tiny ImageNet (200 classes, 64x64 RGB); the labelled ``val`` split is the test set."""
    data_dir = find_tiny_imagenet(root)
    if data_dir is None:
        looked_for = "tiny-imagenet-200/wnids.txt or wnids.txt"
        if not download:
            raise _not_found("tiny_imagenet", root, looked_for)
        try:
            tv_datasets.utils.download_and_extract_archive(
                _TINY_IMAGENET_URL, str(root), md5=_TINY_IMAGENET_MD5
            )
        except Exception as exc:  # urllib, zipfile and md5 failures
            raise BenchmarkError(
                f"downloading dataset 'tiny_imagenet' into {root} failed ({one_line(exc)}); "
                f"without network, download {_TINY_IMAGENET_URL} and unzip it into {root}, "
                "or pass data.root=PATH"
            ) from exc
        data_dir = find_tiny_imagenet(root)
        if data_dir is None:
            raise _not_found("tiny_imagenet", root, looked_for)

    def build() -> ImageData:
        files = list_tiny_imagenet(data_dir)
        return _decode_files("tiny_imagenet", data_dir, files, "RGB", _TINY_IMAGENET_STATS)

    return cached_decode(cache_dir, "tiny_imagenet", data_dir, build)
