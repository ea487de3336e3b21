"""Registered image datasets, decoded once into in-memory uint8 tensors.

Every dataset loads into an :class:`ImageData`: the official training and test
sets as ``uint8 [N, C, H, W]`` image tensors with ``int64`` labels, the class
names and the per-channel normalisation constants. Splits into forget/retain
sets are index arrays over ``train_x`` built elsewhere; this module never
changes labels or order after loading.

Loaders are plain functions ``(root: Path, download: bool) -> ImageData``
registered in :data:`DATASETS`; :func:`load_dataset` is the one entry point.

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

Image folders are decoded with torchvision's batched JPEG decoder in a thread
pool (PIL for other formats). With ``cache_dir`` the decoded tensors are kept
in ``<cache_dir>/decoded/<name>-<key>.pt``, checked by SHA-256 on every load.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import tempfile
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image
from torchvision import datasets as tv_datasets

try:  # torchvision >= 0.29 deprecates its decoders in favour of TorchCodec; PIL stands in
    from torchvision.io import ImageReadMode, decode_jpeg
except ImportError:  # pragma: no cover - depends on the installed torchvision
    ImageReadMode = decode_jpeg = None  # type: ignore[assignment,misc]

from benchmark.errors import BenchmarkError
from benchmark.registry import Registry

log = logging.getLogger(__name__)

Loader = Callable[[Path, bool], "ImageData"]
DATASETS: Registry[Loader] = Registry("dataset")

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp", ".gif")
CACHE_FORMAT = 1  # bump when decoding changes, so stale caches are not reused

_JPEG_MAGIC = b"\xff\xd8\xff"
_CHUNK = 1024  # images per decode task; large enough to amortise the batched decoder
_PIL_GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"}
_TENSOR_FIELDS = ("train_x", "train_y", "test_x", "test_y")

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


# --------------------------------------------------------------------------- entry point


@dataclass(frozen=True)
class _LoadContext:
    name: str
    cache_dir: Path | None


_CONTEXT: ContextVar[_LoadContext | None] = ContextVar("dataset_load_context", default=None)


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
    token = _CONTEXT.set(_LoadContext(name, cache))
    try:
        return loader(root_path, download)
    finally:
        _CONTEXT.reset(token)


# --------------------------------------------------------------------------- errors


def _not_found(name: str, root: Path, looked_for: str, can_download: bool = True) -> BenchmarkError:
    fix = "extract it there, pass data.root=PATH"
    fix += ", or allow the download with data.download=true" if can_download else " instead"
    return BenchmarkError(
        f"dataset {name!r} not found under {root} (looked for {looked_for}); {fix}"
    )


def _one_line(exc: BaseException, limit: int = 200) -> str:
    text = " ".join(str(exc).split()) or "no details"
    text = text if len(text) <= limit else text[: limit - 3] + "..."
    return f"{type(exc).__name__}: {text}"


# --------------------------------------------------------------------------- decode cache


def cached_decode(data_dir: Path, build: Callable[[], ImageData]) -> ImageData:
    """Returns ``build()``, through the decode cache when :func:`load_dataset` was given one.

    Loaders that decode image files call this so that their result is cached under
    ``<cache_dir>/decoded/<name>-<key>.pt``. The key hashes the absolute ``data_dir`` and a
    fingerprint of every file below it (count, total size, newest mtime, names), so adding,
    removing, renaming or rewriting a file decodes again. The file stores a SHA-256 of the
    tensors; a truncated or corrupt file logs one warning and is rebuilt.

    Args:
        data_dir: The folder the images are decoded from.
        build: Decodes the dataset from ``data_dir``.

    Returns:
        The dataset, decoded now or read from the cache.
    """
    ctx = _CONTEXT.get()
    if ctx is None or ctx.cache_dir is None:
        return build()
    key = hashlib.sha256(
        f"{CACHE_FORMAT}|{ctx.name}|{data_dir.absolute()}|{_fingerprint(data_dir)}".encode()
    ).hexdigest()[:16]
    path = ctx.cache_dir / "decoded" / f"{ctx.name}-{key}.pt"
    if path.is_file():
        try:
            return _read_cache(path)
        except Exception as exc:  # any unreadable cache is rebuilt, never trusted
            log.warning(
                "dataset cache %s is damaged (%s); decoding the images again",
                path,
                _one_line(exc),
            )
    data = build()
    _write_cache(path, data)
    return data


def _fingerprint(data_dir: Path) -> str:
    """Cheap summary of a file tree: count, total size, newest mtime and a hash of the names."""
    count = size = newest = 0
    names = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(data_dir, followlinks=True):
        dirnames.sort()
        newest = max(newest, os.stat(dirpath).st_mtime_ns)  # renames and deletions touch it
        filenames.sort()
        stats = [os.stat(os.path.join(dirpath, f)) for f in filenames]
        count += len(stats)
        size += sum(st.st_size for st in stats)
        newest = max([newest, *(st.st_mtime_ns for st in stats)])
        names.update(f"{os.path.relpath(dirpath, data_dir)}\0{'/'.join(filenames)}\n".encode())
    return f"{count}:{size}:{newest}:{names.hexdigest()}"


def _digest(payload: dict[str, Any]) -> str:
    h = hashlib.sha256()
    meta = {k: payload[k] for k in ("name", "classes", "mean", "std")}
    meta["tensors"] = {f: [str(payload[f].dtype), list(payload[f].shape)] for f in _TENSOR_FIELDS}
    h.update(json.dumps(meta, sort_keys=True).encode())
    for field in _TENSOR_FIELDS:
        h.update(payload[field].contiguous().numpy().reshape(-1).view(np.uint8))
    return h.hexdigest()


def _read_cache(path: Path) -> ImageData:
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != CACHE_FORMAT:
        raise ValueError("unexpected contents")
    if payload.get("sha256") != _digest(payload):
        raise ValueError("SHA-256 mismatch")
    log.info("loaded decoded dataset from %s", path)
    return ImageData(
        name=payload["name"],
        **{f: payload[f] for f in _TENSOR_FIELDS},
        classes=list(payload["classes"]),
        mean=tuple(payload["mean"]),
        std=tuple(payload["std"]),
    )


def _write_cache(path: Path, data: ImageData) -> None:
    payload: dict[str, Any] = {
        "format": CACHE_FORMAT,
        "name": data.name,
        "classes": list(data.classes),
        "mean": list(data.mean),
        "std": list(data.std),
        **{f: getattr(data, f).contiguous() for f in _TENSOR_FIELDS},
    }
    payload["sha256"] = _digest(payload)
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; the cache may be shared
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # atomic: readers see the old file or the whole new one
        tmp = None
    except (OSError, RuntimeError) as exc:  # the cache only saves time; the data is correct
        log.warning(
            "could not write dataset cache %s (%s); continuing without it", path, _one_line(exc)
        )
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


# --------------------------------------------------------------------------- image decoding


def _decode_images(paths: Sequence[str], mode: Literal["RGB", "auto"]) -> torch.Tensor:
    """Decodes image files into one uint8 [N, C, H, W] tensor, in the order given.

    JPEGs go through torchvision's batched decoder in a thread pool (it releases the GIL);
    other formats, and JPEGs that torchvision cannot decode, go through PIL.

    Args:
        paths: Image file paths (plain strings: Path objects cost seconds per 100k files),
            all images of the same size.
        mode: ``"RGB"`` for 3 channels always; ``"auto"`` for 1 channel when every image is
            grayscale and 3 otherwise.

    Raises:
        BenchmarkError: An image cannot be decoded or differs in size from the first one.
    """
    with warnings.catch_warnings():
        # torchvision 0.29 warns that its decoders are deprecated for TorchCodec; they still
        # work, are several times faster than PIL here, and PIL takes over once they are gone
        warnings.filterwarnings("ignore", message=".*decoding and encoding capabilities")
        return _decode_in_threads(paths, mode)


def _decode_in_threads(paths: Sequence[str], mode: Literal["RGB", "auto"]) -> torch.Tensor:
    n = len(paths)
    first = _decode_chunk(paths[:1], mode)[0]
    height, width = first.shape[-2:]
    bounds = [(lo, min(lo + _CHUNK, n)) for lo in range(0, n, _CHUNK)]
    out = torch.empty((n, 3, height, width), dtype=torch.uint8) if mode == "RGB" else None

    def work(lo: int, hi: int) -> torch.Tensor | None:
        images = _decode_chunk(paths[lo:hi], mode)
        for path, img in zip(paths[lo:hi], images, strict=True):
            if img.shape[-2:] != (height, width):
                raise BenchmarkError(
                    f"image {path} is {img.shape[-1]}x{img.shape[-2]} pixels but {paths[0]} is "
                    f"{width}x{height}; all images of a dataset must have one size: resize them "
                    "first (e.g. with PIL Image.resize)"
                )
        if out is not None:
            out[lo:hi] = torch.stack(images)
            return None
        channels = max(img.shape[0] for img in images)
        return torch.stack([img.expand(channels, -1, -1) for img in images])

    workers = max(1, min(len(bounds), _num_threads()))
    if workers == 1:
        parts = [work(lo, hi) for lo, hi in bounds]
    else:
        with ThreadPoolExecutor(workers, thread_name_prefix="decode") as pool:
            # map yields in order, so the first failing chunk's error is the one raised
            parts = list(pool.map(lambda b: work(*b), bounds))
    if out is not None:
        return out
    chunks = [p for p in parts if p is not None]
    channels = max(c.shape[1] for c in chunks)  # RGB unless every image is grayscale
    result = torch.empty((n, channels, height, width), dtype=torch.uint8)
    offset = 0
    for c in chunks:
        result[offset : offset + len(c)] = c  # broadcasts 1 -> 3 channels
        offset += len(c)
    return result


def _num_threads() -> int:
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return min(cpus, 8)


def _decode_chunk(paths: Sequence[str], mode: Literal["RGB", "auto"]) -> list[torch.Tensor]:
    """Decodes a few files into [C, H, W] uint8 tensors with C in {1, 3} (3 when mode is RGB)."""
    raw: list[bytes] = []
    for path in paths:
        try:
            with open(path, "rb") as f:
                raw.append(f.read())
        except OSError as exc:
            raise BenchmarkError(
                f"cannot read image {path} ({_one_line(exc)}); check the file's permissions"
            ) from exc
    images: list[torch.Tensor | None] = [None] * len(paths)
    jpegs = [i for i, data in enumerate(raw) if data[:3] == _JPEG_MAGIC]
    if jpegs and decode_jpeg is not None:
        tv_mode = ImageReadMode.RGB if mode == "RGB" else ImageReadMode.UNCHANGED
        try:
            tensors = [torch.frombuffer(bytearray(raw[i]), dtype=torch.uint8) for i in jpegs]
            for i, img in zip(jpegs, decode_jpeg(tensors, mode=tv_mode), strict=True):
                images[i] = img
        except RuntimeError:  # a bad file in the batch: decode one by one, PIL for the bad one
            for i in jpegs:
                with contextlib.suppress(RuntimeError):
                    images[i] = decode_jpeg(
                        torch.frombuffer(bytearray(raw[i]), dtype=torch.uint8), mode=tv_mode
                    )
    for i, path in enumerate(paths):
        img = images[i]
        if img is not None and img.shape[0] not in (1, 3):
            img = None  # CMYK JPEG: let PIL convert it
        images[i] = img if img is not None else _decode_pil(path, raw[i], mode)
    return images  # type: ignore[return-value]


def _decode_pil(path: str, data: bytes, mode: Literal["RGB", "auto"]) -> torch.Tensor:
    try:
        with Image.open(io.BytesIO(data)) as im:
            target = "L" if mode == "auto" and im.mode in _PIL_GRAY_MODES else "RGB"
            arr = np.array(im.convert(target))
    except Exception as exc:  # PIL raises many types for bad files
        raise BenchmarkError(
            f"cannot decode image {path} ({_one_line(exc)}); delete or replace the file"
        ) from exc
    if arr.ndim == 2:
        return torch.from_numpy(arr).unsqueeze(0)
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


def _channel_stats(x: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 [N, C, H, W] images, in [0, 1] units."""
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


# --------------------------------------------------------------------------- class folders


def _find_split_root(root: Path) -> Path | None:
    """The folder holding ``train/``: the root itself or its only subfolder that has one."""
    if (root / "train").is_dir():
        return root
    if not root.is_dir():
        return None
    below = [
        d for d in sorted(root.iterdir()) if not d.name.startswith(".") and (d / "train").is_dir()
    ]
    return below[0] if len(below) == 1 else None


def _test_dir(name: str, data_dir: Path) -> Path:
    for split in ("test", "val"):
        if (data_dir / split).is_dir():
            return data_dir / split
    raise BenchmarkError(
        f"dataset {name!r}: found {data_dir / 'train'} but no test/ or val/ folder next to it; "
        "add test/<class>/<image> files there or pass data.root=PATH"
    )


def _is_image(fname: str) -> bool:
    return not fname.startswith(".") and fname.lower().endswith(IMG_EXTENSIONS)


def _list_class_folders(
    split_dir: Path, classes: Sequence[str] | None
) -> tuple[list[str], list[int], list[str]]:
    """Lists ``split_dir/<class>/**/<image>`` files, sorted by class then path.

    Args:
        split_dir: A ``train/`` or ``test/`` folder.
        classes: The class list to label by (the train split's); None to take it from here.

    Returns:
        The image paths, their labels and the class list.
    """
    found = sorted(
        e.name for e in os.scandir(split_dir) if e.is_dir() and not e.name.startswith(".")
    )
    is_train = classes is None
    if classes is None:
        classes = found
    extra = sorted(set(found) - set(classes))
    if extra:
        raise BenchmarkError(
            f"{split_dir} has class folders that the train split lacks ({', '.join(extra[:5])}); "
            "give both splits the same class folders"
        )
    paths: list[str] = []
    labels: list[int] = []
    for label, cls in enumerate(classes):
        files: list[str] = []
        for dirpath, dirnames, filenames in os.walk(split_dir / cls, followlinks=True):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            files.extend(os.path.join(dirpath, f) for f in filenames if _is_image(f))
        if not files and is_train:  # a test split may lack a class
            raise BenchmarkError(
                f"class folder {split_dir / cls} holds no images ({'/'.join(IMG_EXTENSIONS)}); "
                "add images or remove the folder"
            )
        files.sort()
        paths.extend(files)
        labels.extend([label] * len(files))
    if not paths:
        raise BenchmarkError(
            f"no images found under {split_dir} (expected <class>/<image> files ending in "
            f"{'/'.join(IMG_EXTENSIONS)}); put the images there or pass data.root=PATH"
        )
    return paths, labels, list(classes)


def _decode_class_folders(
    name: str,
    data_dir: Path,
    mode: Literal["RGB", "auto"],
    stats: tuple[tuple[float, ...], tuple[float, ...]] | None = None,
    expected_classes: Sequence[str] | None = None,
) -> ImageData:
    """Decodes ``data_dir/train/<class>/`` and ``data_dir/{test,val}/<class>/`` (cached)."""
    test_dir = _test_dir(name, data_dir)

    def build() -> ImageData:
        train_paths, train_labels, classes = _list_class_folders(data_dir / "train", None)
        if expected_classes is not None and classes != list(expected_classes):
            raise BenchmarkError(
                f"dataset {name!r}: class folders under {data_dir / 'train'} are "
                f"{', '.join(classes[:12])}, expected {', '.join(expected_classes)}; "
                "rename them, or load other class sets with dataset=imagefolder"
            )
        test_paths, test_labels, _ = _list_class_folders(test_dir, classes)
        log.info("decoding %d images under %s", len(train_paths) + len(test_paths), data_dir)
        x = _decode_images(train_paths + test_paths, mode)
        train_x, test_x = x[: len(train_paths)], x[len(train_paths) :]
        mean, std = stats if stats is not None else _channel_stats(train_x)
        return ImageData(
            name=name,
            train_x=train_x.clone(),
            train_y=torch.tensor(train_labels, dtype=torch.int64),
            test_x=test_x.clone(),
            test_y=torch.tensor(test_labels, dtype=torch.int64),
            classes=classes,
            mean=mean,
            std=std,
        )

    return cached_decode(data_dir, build)


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
                f"downloading dataset {name!r} into {root} failed ({_one_line(exc)}); "
                f"without network, {by_hand}, or pass data.root=PATH"
            ) from exc
        raise BenchmarkError(
            f"dataset {name!r} under {root} could not be read ({_one_line(exc)}); extract it "
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
def cifar10(root: Path, download: bool) -> ImageData:
    """CIFAR-10 from torchvision's ``cifar-10-batches-py/`` or a ``train/<class>/`` JPEG tree."""
    if not (root / "cifar-10-batches-py").is_dir() and root.name != "cifar-10-batches-py":
        data_dir = _find_split_root(root)
        if data_dir is not None:
            return _decode_class_folders(
                "cifar10", data_dir, "RGB", _CIFAR10_STATS, expected_classes=CIFAR10_CLASSES
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
def cifar100(root: Path, download: bool) -> ImageData:
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
def svhn(root: Path, download: bool) -> ImageData:
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
def mnist(root: Path, download: bool) -> ImageData:
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
def fashion_mnist(root: Path, download: bool) -> ImageData:
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
def digits(root: Path, download: bool) -> ImageData:
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
    mean, std = _channel_stats(train_x)
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
def imagefolder(root: Path, download: bool) -> ImageData:
    """Any ``train/<class>/<image>`` plus ``test/`` (else ``val/``) tree of same-sized images."""
    data_dir = _find_split_root(root)
    if data_dir is None:
        raise _not_found(
            "imagefolder",
            root,
            "train/<class>/ and test/<class>/ or val/<class>/ folders",
            can_download=False,
        )
    return _decode_class_folders("imagefolder", data_dir, "auto")


@DATASETS.register("tiny_imagenet")
def tiny_imagenet(root: Path, download: bool) -> ImageData:
    """Tiny ImageNet (200 classes, 64x64 RGB); the labelled ``val`` split is the test set."""
    data_dir = _find_tiny_imagenet(root)
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
                f"downloading dataset 'tiny_imagenet' into {root} failed ({_one_line(exc)}); "
                f"without network, download {_TINY_IMAGENET_URL} and unzip it into {root}, "
                "or pass data.root=PATH"
            ) from exc
        data_dir = _find_tiny_imagenet(root)
        if data_dir is None:
            raise _not_found("tiny_imagenet", root, looked_for)

    def build() -> ImageData:
        wnids = sorted(
            {
                line.strip()
                for line in (data_dir / "wnids.txt").read_text().splitlines()
                if line.strip()
            }
        )
        index = {w: i for i, w in enumerate(wnids)}
        train_paths: list[str] = []
        train_labels: list[int] = []
        for wnid in wnids:
            files = sorted(
                os.path.join(dirpath, f)
                for dirpath, _, filenames in os.walk(data_dir / "train" / wnid)
                for f in filenames
                if _is_image(f)
            )
            if not files:
                raise BenchmarkError(
                    f"no training images for class {wnid} under {data_dir / 'train' / wnid}; "
                    "extract tiny-imagenet-200.zip again"
                )
            train_paths.extend(files)
            train_labels.extend([index[wnid]] * len(files))
        test_paths, test_labels = _tiny_imagenet_val(data_dir, index)
        log.info("decoding %d images under %s", len(train_paths) + len(test_paths), data_dir)
        x = _decode_images(train_paths + test_paths, "RGB")
        return ImageData(
            name="tiny_imagenet",
            train_x=x[: len(train_paths)].clone(),
            train_y=torch.tensor(train_labels, dtype=torch.int64),
            test_x=x[len(train_paths) :].clone(),
            test_y=torch.tensor(test_labels, dtype=torch.int64),
            classes=wnids,
            mean=_TINY_IMAGENET_STATS[0],
            std=_TINY_IMAGENET_STATS[1],
        )

    return cached_decode(data_dir, build)


def _find_tiny_imagenet(root: Path) -> Path | None:
    for candidate in (root / "tiny-imagenet-200", root):
        if (candidate / "wnids.txt").is_file():
            return candidate
    return None


def _tiny_imagenet_val(data_dir: Path, index: dict[str, int]) -> tuple[list[str], list[int]]:
    annotations = data_dir / "val" / "val_annotations.txt"
    if not annotations.is_file():
        raise BenchmarkError(f"{annotations} is missing; extract tiny-imagenet-200.zip again")
    rows: list[tuple[str, int]] = []
    for line in annotations.read_text().splitlines():
        fields = line.split("\t")
        if len(fields) < 2:
            continue
        if fields[1] not in index:
            raise BenchmarkError(
                f"{annotations} labels {fields[0]} with {fields[1]}, which wnids.txt lacks; "
                "extract tiny-imagenet-200.zip again"
            )
        rows.append((fields[0], index[fields[1]]))
    rows.sort()
    if not rows:
        raise BenchmarkError(f"{annotations} lists no images; extract tiny-imagenet-200.zip again")
    images = data_dir / "val" / "images"
    return [os.path.join(images, f) for f, _ in rows], [label for _, label in rows]
