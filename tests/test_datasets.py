"""Dataset loading: shapes, labels, pixel values, the decode cache and one-line errors.

Everything here is built in ``tmp_path`` or shipped with scikit-learn; nothing is downloaded.
"""

from __future__ import annotations

import logging
import struct
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from benchmark.data import CIFAR10_CLASSES, DATASETS, ImageData, decode, load_dataset, sources
from benchmark.errors import BenchmarkError

CACHE_LOGGER = "benchmark.data.cache"


def _write_tree(
    root: Path,
    classes: tuple[str, ...] | list[str],
    counts: dict[str, int],
    size: tuple[int, int] = (32, 32),
    mode: str = "RGB",
    fmt: str = "png",
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Writes ``root/<split>/<class>/<i>.<fmt>`` images; returns them per split, in label order.

    Returns:
        ``{split: uint8 array [N, C, H, W]}`` of the pixels written (for JPEG: as PIL reads them).
    """
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for split, count in counts.items():
        arrays = []
        for cls in classes:
            folder = root / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                shape = (size[1], size[0]) if mode == "L" else (size[1], size[0], 3)
                pixels = rng.integers(0, 256, shape, dtype=np.uint8)
                path = folder / f"{i:03d}.{fmt}"
                Image.fromarray(pixels).save(path, **({"quality": 95} if fmt == "jpg" else {}))
                with Image.open(path) as im:
                    arr = np.asarray(im.convert(mode))
                arrays.append(arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1))
        out[split] = np.stack(arrays)
    return out


@pytest.fixture
def cifar_tree(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    """A CIFAR-10 class-folder tree of PNGs: 3 train and 2 test images per class."""
    root = tmp_path / "cifar10"
    return root, _write_tree(root, CIFAR10_CLASSES, {"train": 3, "test": 2})


def _assert_one_line(exc: pytest.ExceptionInfo[BenchmarkError]) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


# --------------------------------------------------------------------------- digits


def test_digits_shapes_classes_and_split() -> None:
    data = load_dataset("digits")
    assert data.train_x.shape == (1257, 1, 8, 8) and data.test_x.shape == (540, 1, 8, 8)
    assert data.train_x.dtype == torch.uint8 and data.train_y.dtype == torch.int64
    assert data.classes == [str(i) for i in range(10)]
    assert (data.num_classes, data.in_channels, data.image_size) == (10, 1, 8)
    assert int(data.train_x.min()) == 0 and int(data.train_x.max()) == 255
    # 0..16 scaled by 255/16: every value is one of 17 levels
    levels = {round(v * 255 / 16) for v in range(17)}
    assert set(torch.unique(data.train_x).tolist()) <= levels
    # stratified 30%: every class's test share is 30% up to rounding
    train_counts = torch.bincount(data.train_y, minlength=10)
    test_counts = torch.bincount(data.test_y, minlength=10)
    share = test_counts / (train_counts + test_counts)
    assert torch.all((share - 0.3).abs() < 0.01)
    # mean/std are the training set's, in [0, 1] units
    assert data.mean[0] == pytest.approx(data.train_x.double().mean().item() / 255, rel=1e-9)
    assert data.std[0] == pytest.approx(data.train_x.double().std(unbiased=False).item() / 255)


def test_digits_is_deterministic_and_ignores_root(tmp_path: Path) -> None:
    a = load_dataset("digits")
    b = load_dataset("digits", root=str(tmp_path / "nowhere"))
    for field in ("train_x", "train_y", "test_x", "test_y"):
        assert torch.equal(getattr(a, field), getattr(b, field))
    # train and test are disjoint pieces of the 1797 images
    from sklearn.datasets import load_digits

    assert len(a.train_y) + len(a.test_y) == len(load_digits().target)


# --------------------------------------------------------------------------- class folders


def test_cifar10_class_folder_layout(cifar_tree: tuple[Path, dict[str, np.ndarray]]) -> None:
    root, pixels = cifar_tree
    data = load_dataset("cifar10", root=str(root))
    assert data.classes == list(CIFAR10_CLASSES)
    assert data.train_x.shape == (30, 3, 32, 32) and data.test_x.shape == (20, 3, 32, 32)
    assert torch.equal(data.train_x, torch.from_numpy(pixels["train"]))  # PNG: lossless
    assert torch.equal(data.test_x, torch.from_numpy(pixels["test"]))
    assert data.train_y.tolist() == [k for k in range(10) for _ in range(3)]
    assert data.test_y.tolist() == [k for k in range(10) for _ in range(2)]
    assert data.mean == sources._CIFAR10_STATS[0] and data.std == sources._CIFAR10_STATS[1]


def test_cifar10_root_one_level_above_train(tmp_path: Path) -> None:
    pixels = _write_tree(
        tmp_path / "outer" / "cifar10-images", CIFAR10_CLASSES, {"train": 1, "test": 1}
    )
    data = load_dataset("cifar10", root=str(tmp_path / "outer"))
    assert torch.equal(data.train_x, torch.from_numpy(pixels["train"]))


def test_cifar10_rejects_other_class_sets(tmp_path: Path) -> None:
    _write_tree(tmp_path, ["cat", "dog"], {"train": 1, "test": 1})
    with pytest.raises(BenchmarkError, match="dataset=imagefolder") as exc:
        load_dataset("cifar10", root=str(tmp_path))
    _assert_one_line(exc)


def test_imagefolder_jpeg_rgb_with_val_split(tmp_path: Path) -> None:
    pixels = _write_tree(tmp_path, ["b", "a"], {"train": 4, "val": 2}, size=(24, 16), fmt="jpg")
    data = load_dataset("imagefolder", root=str(tmp_path))
    assert data.classes == ["a", "b"]  # sorted folder names
    assert data.train_x.shape == (8, 3, 16, 24) and data.test_x.shape == (4, 3, 16, 24)
    assert data.train_y.tolist() == [0] * 4 + [1] * 4
    # torchvision's and PIL's JPEG decoders agree up to rounding
    expected = np.concatenate([pixels["train"][4:], pixels["train"][:4]])  # "a" before "b"
    diff = (data.train_x.int() - torch.from_numpy(expected).int()).abs()
    assert int(diff.max()) <= 2
    # mean/std computed from train_x
    expected = data.train_x.double().mean(dim=(0, 2, 3)) / 255
    assert data.mean == pytest.approx(expected.tolist())
    assert data.std == pytest.approx(
        (data.train_x.double().std(dim=(0, 2, 3), unbiased=False) / 255).tolist()
    )


def test_imagefolder_grayscale_stays_one_channel(tmp_path: Path) -> None:
    pixels = _write_tree(tmp_path, ["x", "y"], {"train": 2, "test": 1}, mode="L")
    data = load_dataset("imagefolder", root=str(tmp_path))
    assert data.in_channels == 1 and len(data.mean) == 1
    assert torch.equal(data.train_x, torch.from_numpy(pixels["train"]))


def test_imagefolder_mixed_gray_and_rgb_becomes_rgb(tmp_path: Path) -> None:
    gray = _write_tree(tmp_path, ["x"], {"train": 2, "test": 1}, mode="L", seed=1)
    _write_tree(tmp_path, ["y"], {"train": 2, "test": 1}, mode="RGB", seed=2)
    data = load_dataset("imagefolder", root=str(tmp_path))
    assert data.in_channels == 3
    # a grayscale image becomes three equal channels
    assert torch.equal(data.train_x[0], torch.from_numpy(gray["train"][0]).expand(3, -1, -1))


def test_imagefolder_different_sizes_name_the_file(tmp_path: Path) -> None:
    _write_tree(tmp_path, ["a", "b"], {"train": 2, "test": 1})
    odd = tmp_path / "train" / "b" / "001.png"
    Image.new("RGB", (40, 32)).save(odd)
    with pytest.raises(BenchmarkError, match="resize") as exc:
        load_dataset("imagefolder", root=str(tmp_path))
    assert str(odd) in _assert_one_line(exc)


def test_imagefolder_without_images(tmp_path: Path) -> None:
    (tmp_path / "train").mkdir()
    (tmp_path / "test").mkdir()
    (tmp_path / "train" / "notes.txt").write_text("no images here")
    with pytest.raises(BenchmarkError, match="no images found") as exc:
        load_dataset("imagefolder", root=str(tmp_path))
    assert str(tmp_path / "train") in _assert_one_line(exc)


def test_pil_decodes_when_torchvision_decoders_are_gone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write_tree(tmp_path, ["a", "b"], {"train": 2, "test": 1}, fmt="jpg")
    fast = load_dataset("imagefolder", root=str(tmp_path))
    monkeypatch.setattr(decode, "decode_jpeg", None)  # as on a torchvision without image decoders
    slow = load_dataset("imagefolder", root=str(tmp_path))
    assert slow.train_x.shape == fast.train_x.shape
    assert int((slow.train_x.int() - fast.train_x.int()).abs().max()) <= 2


def test_undecodable_image_names_the_file(tmp_path: Path) -> None:
    _write_tree(tmp_path, ["a", "b"], {"train": 2, "test": 1}, fmt="jpg")
    bad = tmp_path / "test" / "b" / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0" + b"not really a jpeg" * 10)
    with pytest.raises(BenchmarkError, match="cannot decode image") as exc:
        load_dataset("imagefolder", root=str(tmp_path))
    assert str(bad) in _assert_one_line(exc)


def test_tiny_imagenet_layout(tmp_path: Path) -> None:
    base = tmp_path / "tiny-imagenet-200"
    wnids = ["n02", "n01"]
    (base / "val" / "images").mkdir(parents=True)
    (base / "wnids.txt").write_text("\n".join(wnids) + "\n")
    rng = np.random.default_rng(0)
    for wnid in wnids:
        (base / "train" / wnid / "images").mkdir(parents=True)
        (base / "train" / wnid / f"{wnid}_boxes.txt").write_text("")
        for i in range(2):
            pixels = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(base / "train" / wnid / "images" / f"{wnid}_{i}.JPEG")
    annotations = []
    for i, wnid in enumerate(["n01", "n02", "n02"]):
        Image.new("L", (64, 64), 100).save(base / "val" / "images" / f"val_{i}.JPEG")  # a gray one
        annotations.append(f"val_{i}.JPEG\t{wnid}\t0\t0\t63\t63")
    (base / "val" / "val_annotations.txt").write_text("\n".join(annotations) + "\n")

    data = load_dataset("tiny_imagenet", root=str(tmp_path))
    assert data.classes == ["n01", "n02"]
    assert data.train_x.shape == (4, 3, 64, 64) and data.test_x.shape == (3, 3, 64, 64)
    assert data.train_y.tolist() == [0, 0, 1, 1] and data.test_y.tolist() == [0, 1, 1]
    assert int((data.test_x.int() - 100).abs().max()) <= 1  # gray JPEG decoded to RGB


# --------------------------------------------------------------------------- decode cache


def _fail_decode(*args: object, **kwargs: object) -> torch.Tensor:
    raise AssertionError("decoded although the cache should have answered")


def _assert_same(a: ImageData, b: ImageData) -> None:
    for field in ("train_x", "train_y", "test_x", "test_y"):
        assert torch.equal(getattr(a, field), getattr(b, field)), field
    assert (a.classes, a.mean, a.std) == (b.classes, b.mean, b.std)


def test_cache_hit_skips_decoding(
    cifar_tree: tuple[Path, dict[str, np.ndarray]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, _ = cifar_tree
    cache = tmp_path / "cache"
    first = load_dataset("cifar10", root=str(root), cache_dir=str(cache))
    files = list((cache / "decoded").glob("cifar10-*.pt"))
    assert len(files) == 1
    assert not [p for p in (cache / "decoded").iterdir() if p.suffix == ".tmp"]

    monkeypatch.setattr(sources, "decode_images", _fail_decode)
    _assert_same(first, load_dataset("cifar10", root=str(root), cache_dir=str(cache)))

    # a new image changes the fingerprint: the stale entry is not used
    Image.new("RGB", (32, 32)).save(root / "train" / "cat" / "new.png")
    with pytest.raises(AssertionError, match="decoded although"):
        load_dataset("cifar10", root=str(root), cache_dir=str(cache))


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_corrupt_cache_warns_and_decodes_again(
    cifar_tree: tuple[Path, dict[str, np.ndarray]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    damage: str,
) -> None:
    root, _ = cifar_tree
    cache = tmp_path / "cache"
    good = load_dataset("cifar10", root=str(root), cache_dir=str(cache))
    (path,) = (cache / "decoded").glob("cifar10-*.pt")
    blob = bytearray(path.read_bytes())
    if damage == "truncate":
        path.write_bytes(blob[: len(blob) // 2])
    else:  # one flipped bit inside the image bytes: only the SHA-256 can notice
        middle = len(blob) // 2
        blob[middle] ^= 0x01
        path.write_bytes(blob)

    with caplog.at_level(logging.WARNING, logger=CACHE_LOGGER):
        again = load_dataset("cifar10", root=str(root), cache_dir=str(cache))
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and str(path) in warnings[0].getMessage()
    assert "\n" not in warnings[0].getMessage()
    _assert_same(good, again)

    # the rebuilt cache file is good again
    monkeypatch.setattr(sources, "decode_images", _fail_decode)
    _assert_same(good, load_dataset("cifar10", root=str(root), cache_dir=str(cache)))


def test_cache_only_where_asked(
    cifar_tree: tuple[Path, dict[str, np.ndarray]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, _ = cifar_tree
    load_dataset("cifar10", root=str(root), cache_dir=str(tmp_path / "cache"))
    monkeypatch.setattr(sources, "decode_images", _fail_decode)
    # the cache folder is an argument, not state left behind by an earlier call
    with pytest.raises(AssertionError, match="decoded although"):
        load_dataset("cifar10", root=str(root))
    with pytest.raises(AssertionError, match="decoded although"):
        load_dataset("cifar10", root=str(root), cache_dir=str(tmp_path / "other"))


def test_unwritable_cache_warns_and_returns_the_data(
    cifar_tree: tuple[Path, dict[str, np.ndarray]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    root, pixels = cifar_tree
    cache = tmp_path / "cache"

    def full_disk(path: object, data: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("benchmark.data.cache.atomic_write_bytes", full_disk)
    with caplog.at_level(logging.WARNING, logger=CACHE_LOGGER):
        data = load_dataset("cifar10", root=str(root), cache_dir=str(cache))
    assert torch.equal(data.train_x, torch.from_numpy(pixels["train"]))
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "No space left" in warnings[0] and "\n" not in warnings[0]
    assert not (cache / "decoded").exists() or not list((cache / "decoded").iterdir())


# --------------------------------------------------------------------------- torchvision layouts


def _write_idx(path: Path, array: np.ndarray) -> None:
    """Writes MNIST's big-endian idx format (unsigned bytes)."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


@pytest.mark.parametrize("name,folder", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_mnist_like_from_idx_files(tmp_path: Path, name: str, folder: str) -> None:
    raw = tmp_path / folder / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    images = {"train": rng.integers(0, 256, (5, 28, 28)), "t10k": rng.integers(0, 256, (3, 28, 28))}
    labels = {"train": np.array([0, 1, 2, 3, 9]), "t10k": np.array([4, 5, 6])}
    for prefix in ("train", "t10k"):
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", images[prefix])
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels[prefix])
    data = load_dataset(name, root=str(tmp_path))
    assert data.train_x.shape == (5, 1, 28, 28) and data.test_x.shape == (3, 1, 28, 28)
    assert data.train_x.dtype == torch.uint8 and data.train_y.dtype == torch.int64
    assert torch.equal(data.train_x[:, 0], torch.from_numpy(images["train"].astype(np.uint8)))
    assert data.test_y.tolist() == [4, 5, 6] and data.num_classes == 10 and len(data.mean) == 1


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "name", ["cifar10", "cifar100", "svhn", "mnist", "fashion_mnist", "tiny_imagenet"]
)
def test_missing_dataset_names_root_and_fix(tmp_path: Path, name: str) -> None:
    root = tmp_path / "absent"
    with pytest.raises(BenchmarkError, match="not found under") as exc:
        load_dataset(name, root=str(root))
    message = _assert_one_line(exc)
    assert str(root) in message and "data.root=" in message and "data.download=true" in message


def test_missing_default_root_is_data_name_under_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(BenchmarkError) as exc:
        load_dataset("cifar10")
    message = _assert_one_line(exc)
    assert str(tmp_path / "data" / "cifar10") in message
    assert "cifar-10-batches-py/" in message and "data.root=" in message


def test_missing_imagefolder_offers_no_download(tmp_path: Path) -> None:
    with pytest.raises(BenchmarkError, match="not found under") as exc:
        load_dataset("imagefolder", root=str(tmp_path))
    message = _assert_one_line(exc)
    assert str(tmp_path) in message and "data.root=" in message and "download" not in message


def test_failed_download_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(sources.tv_datasets.CIFAR10, "download", offline)
    monkeypatch.setattr(sources.tv_datasets.utils, "download_and_extract_archive", offline)
    for name, source in [
        ("cifar10", "cifar-10-python.tar.gz"),
        ("tiny_imagenet", "tiny-imagenet-200.zip"),
    ]:
        with pytest.raises(BenchmarkError, match="failed") as exc:
            load_dataset(name, root=str(tmp_path / name), download=True)
        message = _assert_one_line(exc)
        assert message.startswith(f"downloading dataset '{name}'")
        assert str(tmp_path / name) in message and source in message and "URLError" in message


def test_unknown_dataset_suggests_a_name() -> None:
    with pytest.raises(BenchmarkError, match="did you mean 'cifar10'") as exc:
        load_dataset("cifar01")
    _assert_one_line(exc)
    assert {"digits", "cifar10", "imagefolder", "tiny_imagenet"} <= set(DATASETS.names())


def test_image_data_rejects_bad_labels() -> None:
    x = torch.zeros(2, 1, 4, 4, dtype=torch.uint8)
    with pytest.raises(ValueError, match="outside"):
        ImageData("t", x, torch.tensor([0, 2]), x, torch.tensor([0, 1]), ["a", "b"], (0.5,), (0.2,))
