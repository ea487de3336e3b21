"""Cached per-example model outputs: the only input the metrics read.

A model is evaluated once per split; its logits, labels and per-example losses are
kept as a :class:`SplitOutputs` per split and cached on disk with
:func:`save_outputs` / :func:`load_outputs`. Every metric is then a pure function of
these arrays, so attacks never re-run inference.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TypeAlias

import numpy as np

from benchmark.errors import BenchmarkError
from benchmark.io import atomic_savez
from benchmark.metrics.values import Undefined

log = logging.getLogger(__name__)

#: The splits a model is evaluated on (docs/protocol.md section 1).
SPLITS: tuple[str, ...] = ("forget", "retain", "val", "test")

#: Version 2: logits stored as float32 (version 1 stored float16, which flipped near-tied
#: predictions); a file of another version is never read as current.
_FORMAT_VERSION = 2
_META_KEY = "__meta__"
_F32_MAX = float(np.finfo(np.float32).max)
_SPLIT_NAME = re.compile(r"^[A-Za-z0-9_]+$")
_FIELDS = ("logits", "labels", "loss")


@dataclass(frozen=True, eq=False)
class SplitOutputs:
    """One model's outputs on one split, one row per example, in the split's order.

    Inputs are converted on construction: ``logits`` to float32 (values beyond the
    float32 range, and +-inf, are clipped to +-3.4028235e38, so a diverged model gives
    huge but finite logits; NaN stays NaN), ``labels`` to int64, ``loss`` to float32.
    An empty split may have shape [0, C] or [0, 0].

    Attributes:
        logits: float32 [N, C] raw model outputs.
        labels: int64 [N] true labels in [0, C).
        loss: float32 [N] per-example cross-entropy (computed by the caller in
            float32 from the unrounded logits).
    """

    logits: np.ndarray
    labels: np.ndarray
    loss: np.ndarray

    def __post_init__(self) -> None:
        logits = np.asarray(self.logits)
        if logits.ndim != 2 or (logits.shape[0] and logits.shape[1] < 1):
            raise BenchmarkError(f"logits must have shape [N, C] with C >= 1, got {logits.shape}")
        if logits.size and not np.issubdtype(logits.dtype, np.floating):
            raise BenchmarkError(f"logits must be floating point, got {logits.dtype}")
        if logits.dtype != np.float32:
            # clip where the float32 range is representable (float16's inf would stay inf), then cast
            wide = logits if logits.dtype.itemsize >= 8 else logits.astype(np.float64)
            logits = np.clip(wide, -_F32_MAX, _F32_MAX).astype(np.float32)
        elif np.isinf(logits).any():
            logits = np.clip(logits, -_F32_MAX, _F32_MAX)
        labels = np.asarray(self.labels)
        if labels.ndim != 1 or labels.shape[0] != logits.shape[0]:
            raise BenchmarkError(f"labels must have shape [{logits.shape[0]}], got {labels.shape}")
        if labels.size and not np.issubdtype(labels.dtype, np.integer):
            raise BenchmarkError(f"labels must be integers, got {labels.dtype}")
        labels = labels.astype(np.int64, copy=False)
        if labels.size and (labels.min() < 0 or labels.max() >= logits.shape[1]):
            raise BenchmarkError(
                f"labels must lie in [0, {logits.shape[1]}), got [{labels.min()}, {labels.max()}]"
            )
        loss = np.asarray(self.loss)
        if loss.shape != labels.shape:
            raise BenchmarkError(f"loss must have shape [{labels.shape[0]}], got {loss.shape}")
        loss = loss.astype(np.float32, copy=False)
        object.__setattr__(self, "logits", logits)
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "loss", loss)

    @property
    def n(self) -> int:
        """Number of examples."""
        return int(self.labels.shape[0])

    @property
    def num_classes(self) -> int:
        """Number of output classes C."""
        return int(self.logits.shape[1])

    @cached_property
    def pred(self) -> np.ndarray:
        """int64 [N] predicted class (argmax of the logits; the first index wins ties)."""
        if self.n == 0:
            return np.zeros(0, dtype=np.int64)
        return np.argmax(self.logits, axis=1).astype(np.int64)

    @cached_property
    def correct(self) -> np.ndarray:
        """bool [N] whether the prediction equals the label."""
        return self.pred == self.labels

    @cached_property
    def true_prob(self) -> np.ndarray:
        """float32 [N] softmax probability of the true label.

        Computed in float32 after subtracting each row's maximum, so it never
        overflows upwards (a clipped -3.4e38 minus a +3.4e38 maximum gives -inf, whose
        exp is the right 0); it underflows to 0 only where the true logit is more
        than ~100 below the row's maximum.
        """
        if self.n == 0:
            return np.zeros(0, dtype=np.float32)
        z = self.logits.astype(np.float32)  # a copy
        with np.errstate(over="ignore"):
            z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return (e[np.arange(self.n), self.labels] / e.sum(axis=1)).astype(np.float32)

    @cached_property
    def n_nonfinite(self) -> int:
        """Number of examples with a NaN logit (a diverged model); losses are checked apart."""
        if self.n == 0:
            return 0
        return int((~np.isfinite(self.logits).all(axis=1)).sum())

    @property
    def accuracy(self) -> float | Undefined:
        """Top-1 accuracy in percent; :class:`Undefined` for an empty split or NaN outputs."""
        if self.n == 0:
            return Undefined("empty split (0 examples)")
        if self.n_nonfinite:
            return Undefined(f"{self.n_nonfinite} of {self.n} examples have NaN logits")
        return 100.0 * float(self.correct.mean())

    def __len__(self) -> int:
        return self.n

    def subset(self, mask: np.ndarray) -> SplitOutputs:
        """The rows selected by a boolean mask or an index array, in order."""
        return SplitOutputs(self.logits[mask], self.labels[mask], self.loss[mask])


#: One model's outputs per split; keys are usually "forget", "retain", "val", "test".
ModelOutputs: TypeAlias = dict[str, SplitOutputs]


class OutputsFormatError(ValueError):
    """An outputs file written in another format version (e.g. version 1, float16 logits)."""


def _digest(arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 over every array's name, dtype, shape and bytes, in name order."""
    h = hashlib.sha256(f"unlearn-bench outputs v{_FORMAT_VERSION}".encode())
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"\0{name}\0{a.dtype.str}\0{a.shape}\0".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def save_outputs(path: str | os.PathLike[str], outputs: ModelOutputs, provenance: dict[str, str] | None = None) -> None:
    """Writes a model's outputs to an ``.npz`` file, atomically, with a SHA-256 digest.

    The file goes through :func:`benchmark.io.atomic_write_bytes`, so a reader sees
    either the old file or the complete new one, never a partial write, and no
    temporary file is left behind on any failure.

    Args:
        path: Destination file (conventionally ending in ``.npz``).
        outputs: Split name -> :class:`SplitOutputs`. Split names are ``[A-Za-z0-9_]+``.
        provenance: What the outputs were computed from, stored in the metadata and
            checked by the reader (e.g. ``{"model_sha256": ..., "split_sha256": ...}``).
    """
    path = Path(path)
    arrays: dict[str, np.ndarray] = {}
    for split, so in outputs.items():
        if not _SPLIT_NAME.match(split):
            raise BenchmarkError(f"split name {split!r} must match [A-Za-z0-9_]+")
        if not isinstance(so, SplitOutputs):
            raise BenchmarkError(f"outputs[{split!r}] must be a SplitOutputs, got {type(so)}")
        for field in _FIELDS:
            arrays[f"{split}.{field}"] = getattr(so, field)
    meta = {"format": _FORMAT_VERSION, "splits": list(outputs), "sha256": _digest(arrays),
            **(provenance or {})}
    atomic_savez(path, **arrays, **{_META_KEY: np.array(json.dumps(meta))})


def read_outputs(path: str | os.PathLike[str]) -> tuple[ModelOutputs, dict]:
    """Reads outputs written by :func:`save_outputs` with their metadata.

    Raises:
        OutputsFormatError: the file is of another format version (e.g. version 1,
            float16 logits).
        Exception: the file is missing, truncated, corrupt or fails its SHA-256 check.
    """
    with np.load(Path(path), allow_pickle=False) as npz:
        meta = json.loads(str(npz[_META_KEY][()]))
        if not isinstance(meta, dict) or meta.get("format") != _FORMAT_VERSION:
            got = meta.get("format") if isinstance(meta, dict) else meta
            raise OutputsFormatError(
                f"written in format {got!r}; this version reads format {_FORMAT_VERSION} (float32 logits)"
            )
        splits = list(meta["splits"])
        names = {f"{s}.{f}" for s in splits for f in _FIELDS}
        if set(npz.files) != names | {_META_KEY}:
            raise ValueError("unexpected array names")
        arrays = {name: npz[name] for name in names}
    if _digest(arrays) != meta["sha256"]:
        raise ValueError("SHA-256 mismatch")
    bad = [s for s in splits if arrays[f"{s}.logits"].dtype != np.float32]
    if bad:
        raise ValueError(f"{bad[0]}.logits are {arrays[f'{bad[0]}.logits'].dtype}, not float32")
    return {s: SplitOutputs(*(arrays[f"{s}.{f}"] for f in _FIELDS)) for s in splits}, meta


def load_outputs(path: str | os.PathLike[str]) -> ModelOutputs | None:
    """Reads outputs written by :func:`save_outputs`.

    Returns:
        The outputs, or ``None`` when the file is missing, truncated, corrupt, of
        another format version or fails its SHA-256 check; the caller then
        recomputes. Never returns partially read or altered numbers.
    """
    path = Path(path)
    if not path.is_file():
        return None
    try:
        return read_outputs(path)[0]
    except OutputsFormatError as e:
        log.warning("outputs cache %s was %s; recomputing", path, e)
        return None
    except Exception as e:  # noqa: BLE001 - a corrupt file can fail in many ways; all mean "recompute"
        log.warning("outputs cache %s is unreadable (%s); recomputing", path, e)
        return None
