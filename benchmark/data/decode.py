"""Finding image files on disk and decoding them into uint8 tensors.

:func:`decode_images` decodes a list of files into one ``uint8 [N, C, H, W]`` tensor:
JPEGs with torchvision's batched decoder in a thread pool (it releases the GIL), other
formats, and JPEGs that torchvision cannot decode, with PIL. The listing helpers find the
files of the two on-disk layouts the loaders read: ``train/<class>/<image>`` plus ``test/``
(or ``val/``) class folders, and the extracted ``tiny-imagenet-200`` folder. Every failure
is a one-line :class:`BenchmarkError` naming the file or folder and the fix.
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image

try:  # torchvision >= 0.29 deprecates its decoders in favour of TorchCodec; PIL stands in
    from torchvision.io import ImageReadMode, decode_jpeg
except ImportError:  # pragma: no cover - depends on the installed torchvision
    ImageReadMode = decode_jpeg = None  # type: ignore[assignment,misc]

from benchmark.errors import BenchmarkError

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp", ".gif")

_JPEG_MAGIC = b"\xff\xd8\xff"
_CHUNK = 1024  # images per decode task; large enough to amortise the batched decoder
_PIL_GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"}


def one_line(exc: BaseException, limit: int = 200) -> str:
    """``"<ExceptionType>: <message>"`` on one line, cut to ``limit`` characters, for messages."""
    text = " ".join(str(exc).split()) or "no details"
    text = text if len(text) <= limit else text[: limit - 3] + "..."
    return f"{type(exc).__name__}: {text}"


# --------------------------------------------------------------------------- decoding


def decode_images(paths: Sequence[str], mode: Literal["RGB", "auto"]) -> torch.Tensor:
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
                f"cannot read image {path} ({one_line(exc)}); check the file's permissions"
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
            f"cannot decode image {path} ({one_line(exc)}); delete or replace the file"
        ) from exc
    if arr.ndim == 2:
        return torch.from_numpy(arr).unsqueeze(0)
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


# --------------------------------------------------------------------------- listing


@dataclass(frozen=True)
class ImageFiles:
    """The image files of a dataset's two splits, with their labels, in decoding order.

    Attributes:
        train_paths: Training image paths (plain strings).
        train_labels: One label per training path.
        test_paths: Test image paths.
        test_labels: One label per test path.
        classes: Class names; label ``k`` is ``classes[k]``.
    """

    train_paths: list[str]
    train_labels: list[int]
    test_paths: list[str]
    test_labels: list[int]
    classes: list[str]


def is_image(fname: str) -> bool:
    """Whether a file name (not a path) is a visible file with an image extension."""
    return not fname.startswith(".") and fname.lower().endswith(IMG_EXTENSIONS)


def find_split_root(root: Path) -> Path | None:
    """The folder holding ``train/``: the root itself or its only subfolder that has one."""
    if (root / "train").is_dir():
        return root
    if not root.is_dir():
        return None
    below = [
        d for d in sorted(root.iterdir()) if not d.name.startswith(".") and (d / "train").is_dir()
    ]
    return below[0] if len(below) == 1 else None


def find_test_dir(name: str, data_dir: Path) -> Path:
    """``data_dir/test``, else ``data_dir/val``.

    Raises:
        BenchmarkError: Neither exists (``name`` is the dataset, for the message).
    """
    for split in ("test", "val"):
        if (data_dir / split).is_dir():
            return data_dir / split
    raise BenchmarkError(
        f"dataset {name!r}: found {data_dir / 'train'} but no test/ or val/ folder next to it; "
        "add test/<class>/<image> files there or pass data.root=PATH"
    )


def _list_class_folders(
    split_dir: Path, classes: Sequence[str] | None
) -> tuple[list[str], list[int], list[str]]:
    """Lists ``split_dir/<class>/**/<image>`` files, sorted by class then path.

    Args:
        split_dir: A ``train/`` or ``test/`` folder.
        classes: The class list to label by (the train split's); None to take it from here.

    Returns:
        The image paths, their labels and the class list.

    Raises:
        BenchmarkError: No images, a train class folder without images, or a class folder
            that the train split lacks.
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
            files.extend(os.path.join(dirpath, f) for f in filenames if is_image(f))
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


def list_split_folders(
    name: str, data_dir: Path, test_dir: Path, expected_classes: Sequence[str] | None = None
) -> ImageFiles:
    """Lists ``data_dir/train/<class>/`` and ``test_dir/<class>/``, labelled by the train classes.

    Args:
        name: The dataset, for messages.
        data_dir: The folder holding ``train/``.
        test_dir: Its test split (see :func:`find_test_dir`).
        expected_classes: If given, the train class folders must be exactly these.

    Raises:
        BenchmarkError: See :func:`_list_class_folders`; or other classes than expected.
    """
    train_paths, train_labels, classes = _list_class_folders(data_dir / "train", None)
    if expected_classes is not None and classes != list(expected_classes):
        raise BenchmarkError(
            f"dataset {name!r}: class folders under {data_dir / 'train'} are "
            f"{', '.join(classes[:12])}, expected {', '.join(expected_classes)}; "
            "rename them, or load other class sets with dataset=imagefolder"
        )
    test_paths, test_labels, _ = _list_class_folders(test_dir, classes)
    return ImageFiles(train_paths, train_labels, test_paths, test_labels, classes)


def find_tiny_imagenet(root: Path) -> Path | None:
    """The extracted ``tiny-imagenet-200`` folder: below the root or the root itself."""
    for candidate in (root / "tiny-imagenet-200", root):
        if (candidate / "wnids.txt").is_file():
            return candidate
    return None


def list_tiny_imagenet(data_dir: Path) -> ImageFiles:
    """Lists Tiny ImageNet's ``train/<wnid>/`` images and its labelled ``val`` split as test.

    Classes are the sorted WordNet ids of ``wnids.txt``; files are sorted by class then path
    (train) and by file name (val).

    Raises:
        BenchmarkError: A class without training images, or a missing, empty or
            inconsistent ``val/val_annotations.txt``.
    """
    wnids = sorted(
        {line.strip() for line in (data_dir / "wnids.txt").read_text().splitlines() if line.strip()}
    )
    index = {w: i for i, w in enumerate(wnids)}
    train_paths: list[str] = []
    train_labels: list[int] = []
    for wnid in wnids:
        files = sorted(
            os.path.join(dirpath, f)
            for dirpath, _, filenames in os.walk(data_dir / "train" / wnid)
            for f in filenames
            if is_image(f)
        )
        if not files:
            raise BenchmarkError(
                f"no training images for class {wnid} under {data_dir / 'train' / wnid}; "
                "extract tiny-imagenet-200.zip again"
            )
        train_paths.extend(files)
        train_labels.extend([index[wnid]] * len(files))
    test_paths, test_labels = _tiny_imagenet_val(data_dir, index)
    return ImageFiles(train_paths, train_labels, test_paths, test_labels, wnids)


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
