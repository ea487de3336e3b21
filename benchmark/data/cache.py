"""The SHA-256-checked cache of datasets decoded from image files.

Decoding a folder of images takes minutes for Tiny ImageNet; the decoded tensors are kept
in ``<cache_dir>/decoded/<name>-<key>.pt`` so later loads take a second. The key hashes the
cache format, the dataset name, the absolute data folder and a fingerprint of every file
below it, so adding, removing, renaming or rewriting a file decodes again. The file itself
stores a SHA-256 of its contents: a truncated or corrupt file logs one warning and is
rebuilt, never trusted. Writes go through :func:`benchmark.io.atomic_write_bytes`.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmark.data.decode import one_line
from benchmark.data.image_data import ImageData
from benchmark.io import atomic_write_bytes

log = logging.getLogger(__name__)

CACHE_FORMAT = 1  # bump when decoding changes, so stale caches are not reused

_TENSOR_FIELDS = ("train_x", "train_y", "test_x", "test_y")


def cached_decode(
    cache_dir: Path | None, name: str, data_dir: Path, build: Callable[[], ImageData]
) -> ImageData:
    """Returns ``build()``, through the decode cache under ``cache_dir`` when there is one.

    Args:
        cache_dir: The cache folder (entries go in its ``decoded/``); None to always build.
        name: The registered dataset name, part of the file name and the key.
        data_dir: The folder the images are decoded from; its files are fingerprinted.
        build: Decodes the dataset from ``data_dir``.

    Returns:
        The dataset, decoded now or read from the cache.
    """
    if cache_dir is None:
        return build()
    key = hashlib.sha256(
        f"{CACHE_FORMAT}|{name}|{data_dir.absolute()}|{fingerprint(data_dir)}".encode()
    ).hexdigest()[:16]
    path = cache_dir / "decoded" / f"{name}-{key}.pt"
    if path.is_file():
        try:
            return read_cache(path)
        except Exception as exc:  # any unreadable cache is rebuilt, never trusted
            log.warning(
                "dataset cache %s is damaged (%s); decoding the images again",
                path,
                one_line(exc),
            )
    data = build()
    write_cache(path, data)
    return data


def fingerprint(data_dir: Path) -> str:
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


def read_cache(path: Path) -> ImageData:
    """Reads a cache file written by :func:`write_cache`.

    Raises:
        Exception: Any failure to read it, a foreign format or a SHA-256 mismatch
            (``ValueError``); the caller rebuilds.
    """
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


def write_cache(path: Path, data: ImageData) -> None:
    """Writes ``data`` with its SHA-256 to ``path`` atomically; a failure only logs a warning.

    The cache only saves time, so an unwritable folder or a full disk must not stop a run.
    """
    payload: dict[str, Any] = {
        "format": CACHE_FORMAT,
        "name": data.name,
        "classes": list(data.classes),
        "mean": list(data.mean),
        "std": list(data.std),
        **{f: getattr(data, f).contiguous() for f in _TENSOR_FIELDS},
    }
    payload["sha256"] = _digest(payload)
    try:
        buf = io.BytesIO()
        torch.save(payload, buf)
        # getbuffer, not getvalue: no second copy of a gigabyte-sized payload. Readers see
        # the old file or the whole new one, never a part.
        atomic_write_bytes(path, buf.getbuffer())
    except (OSError, RuntimeError) as exc:  # the cache only saves time; the data is correct
        log.warning(
            "could not write dataset cache %s (%s); continuing without it", path, one_line(exc)
        )
