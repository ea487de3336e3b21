"""Forget/retain/validation splits as pure, hashed index arrays (docs/protocol.md section 1).

Every array indexes the dataset's *official training set*. Nothing here mutates
labels or datasets: forget membership is the index array itself.

Order of operations:
1. ``train_subset=N`` (optional): a stratified, seeded subset of N training images
   (seeded by ``split_seed``, so every seed of a sweep sees the same D).
2. D_val: ``val_fraction`` (default 10%) of that, stratified by class, held out
   before anything else (also seeded by ``split_seed``); 0 = no D_val.
3. The forget scenario draws D_f from what remains (D), seeded by the cell's seed;
   D_r = D minus D_f. With your own split files (scenario ``indices`` plus a retain
   file) D_f and D_r are the files and D is their union.

The content hash covers every array, so ``val_fraction`` and the files are part of
a split's identity through what they select; at the defaults the arrays, and so
the hashes, are those of earlier versions.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from benchmark.errors import BenchmarkError
from benchmark.io import atomic_savez

SCENARIOS = ("random", "class", "subclass", "indices")
VAL_FRACTION = 0.1


@dataclass(frozen=True)
class Split:
    """One cell's split. All arrays are sorted int64 indices into the official training set."""

    train: np.ndarray  # D = forget + retain
    val: np.ndarray
    forget: np.ndarray
    retain: np.ndarray
    scenario: str
    ratio: float | None
    seed: int
    forget_classes: list[int] | None = field(default=None)

    @property
    def sha256(self) -> str:
        """Content hash of the index arrays (what every result record carries)."""
        h = hashlib.sha256()
        for name in ("train", "val", "forget", "retain"):
            arr = np.ascontiguousarray(getattr(self, name), dtype=np.int64)
            h.update(name.encode())
            h.update(arr.tobytes())
        return h.hexdigest()

    @property
    def base_sha256(self) -> str:
        """Hash of D and D_val alone: what the original model depends on."""
        h = hashlib.sha256()
        for name in ("train", "val"):
            h.update(name.encode())
            h.update(np.ascontiguousarray(getattr(self, name), dtype=np.int64).tobytes())
        return h.hexdigest()

    def save(self, directory: str | Path) -> Path:
        """Writes the arrays and their hash to ``<directory>/<sha256[:16]>.npz`` atomically.

        An existing file is kept only if it loads and holds this split (:meth:`load`
        checks its hash); a truncated, corrupt or foreign file is reported in one
        warning line and written again."""
        path = Path(directory) / f"{self.sha256[:16]}.npz"
        if path.exists():
            try:
                if Split.load(path).sha256 == self.sha256:
                    return path
                why = "holds another split"
            except Exception as e:  # noqa: BLE001 - any unreadable file is rewritten
                why = f"is corrupt ({type(e).__name__}: {str(e)[:80]})"
            print(f"warning: saved split {path} {why}; writing it again", flush=True)
        meta = {"scenario": self.scenario, "ratio": self.ratio, "seed": self.seed,
                "forget_classes": self.forget_classes, "sha256": self.sha256}
        return atomic_savez(path, train=self.train, val=self.val, forget=self.forget, retain=self.retain,
                            meta=np.array(json.dumps(meta)))

    @staticmethod
    def load(path: str | Path) -> Split:
        """Reads a file written by :meth:`save`, checked against the SHA-256 it stores.

        Raises:
            ValueError: the arrays do not match the stored hash (or the file cannot be read).
        """
        with np.load(Path(path), allow_pickle=False) as npz:
            meta = json.loads(str(npz["meta"][()]))
            arrays = {k: np.asarray(npz[k], dtype=np.int64) for k in ("train", "val", "forget", "retain")}
        split = Split(**arrays, scenario=str(meta["scenario"]), ratio=meta["ratio"], seed=int(meta["seed"]),
                      forget_classes=meta.get("forget_classes"))
        if split.sha256 != meta.get("sha256"):
            raise ValueError("SHA-256 mismatch")
        return split


def _stratified_take(labels: np.ndarray, n_take: int, rng: np.random.Generator) -> np.ndarray:
    """Positions (into ``labels``) of a class-stratified sample of ``n_take`` elements."""
    classes, counts = np.unique(labels, return_counts=True)
    # largest-remainder allocation so the total is exactly n_take
    exact = counts * (n_take / len(labels))
    alloc = np.floor(exact).astype(int)
    order = np.argsort(-(exact - alloc), kind="stable")
    alloc[order[: n_take - alloc.sum()]] += 1
    taken = []
    for cls, k in zip(classes, alloc, strict=True):
        pos = np.flatnonzero(labels == cls)
        taken.append(rng.permutation(pos)[:k])
    return np.sort(np.concatenate(taken)) if taken else np.zeros(0, dtype=np.int64)


def check_val_fraction(val_fraction: float) -> float:
    """``data.val_fraction`` as a float in [0, 1); one-line error otherwise."""
    try:
        v = float(val_fraction)
    except (TypeError, ValueError):
        raise BenchmarkError(f"data.val_fraction={val_fraction!r} is not a number; use e.g. 0.1, or 0 for no D_val") from None
    if isinstance(val_fraction, bool) or not 0.0 <= v < 1.0:
        raise BenchmarkError(f"data.val_fraction={val_fraction} is outside [0, 1); use e.g. 0.1, or 0 for no D_val")
    return v


def base_split(labels: np.ndarray, train_subset: int | None, split_seed: int,
               val_fraction: float = VAL_FRACTION) -> tuple[np.ndarray, np.ndarray]:
    """D and D_val: optional stratified subset, then a stratified validation hold-out
    of ``val_fraction`` of it (at least one example; none for 0)."""
    labels = np.asarray(labels)
    val_fraction = check_val_fraction(val_fraction)
    rng = np.random.default_rng([split_seed, 0x5EED])
    pool = np.arange(len(labels))
    if train_subset is not None:
        if not 0 < int(train_subset) <= len(labels):
            raise BenchmarkError(
                f"data.train_subset={train_subset} is outside 1..{len(labels)}; pick a size the dataset has")
        pool = _stratified_take(labels, int(train_subset), rng)
    if val_fraction == 0:
        return pool.astype(np.int64), np.zeros(0, dtype=np.int64)
    val_pos = _stratified_take(labels[pool], max(1, round(val_fraction * len(pool))), rng)
    val = pool[val_pos]
    train = np.setdiff1d(pool, val)
    return train.astype(np.int64), np.sort(val).astype(np.int64)


def check_ratio(ratio: float) -> float:
    try:
        r = float(ratio)
    except (TypeError, ValueError):
        raise BenchmarkError(f"forget ratio {ratio!r} is not a number; use a fraction such as 0.1") from None
    if not 0.0 < r < 1.0:
        raise BenchmarkError(f"forget ratio {ratio} is outside (0, 1); use a fraction such as forget.ratios=[0.1]")
    return r


def make_split(labels: np.ndarray, scenario: str, ratio: float | None, seed: int, *,
               train_subset: int | None = None, split_seed: int = 0,
               classes: list[int] | None = None, indices_file: str | None = None,
               val_fraction: float = VAL_FRACTION, retain_file: str | None = None) -> Split:
    """Builds a cell's split: a pure function of its arguments.

    Args:
        labels: int labels of the official training set, shape [N].
        scenario: ``random`` | ``class`` | ``subclass`` | ``indices``.
        ratio: fraction of D (random), of the classes (class, if ``classes`` is not
            given) or of one class's samples (subclass). Ignored for ``indices``.
        seed: the cell's seed; draws D_f.
        train_subset: optional size of a stratified training subset.
        split_seed: seeds the subset and the validation hold-out.
        classes: explicit forgotten classes (class) or the class to thin (subclass).
        indices_file: for ``indices``: a .npy, .json or whitespace-separated .txt file
            of official training-set indices.
        val_fraction: share of the (subset of the) training set held out as D_val,
            in [0, 1); 0 = no D_val (the split's ``val`` is empty).
        retain_file: for ``indices``: D_r as a file of the same kinds; it must be
            disjoint from D_f. D is then D_f plus D_r. Default: D_r = D minus D_f.
    """
    labels = np.asarray(labels).astype(np.int64)
    if scenario not in SCENARIOS:
        raise BenchmarkError(f"unknown forget.scenario {scenario!r}; available: {', '.join(SCENARIOS)}")
    if retain_file and scenario != "indices":
        raise BenchmarkError(f"forget.retain_file is only read with forget.scenario=indices (got {scenario!r}); "
                             "unset it or use forget.scenario=indices with forget.indices_file")
    train, val = base_split(labels, train_subset, split_seed, val_fraction)
    rng = np.random.default_rng([seed, 0xF0])
    y = labels[train]
    num_classes = int(labels.max()) + 1
    forget_classes = None
    if scenario == "random":
        r = check_ratio(ratio)
        n = max(1, round(r * len(train)))
        forget = rng.choice(train, size=n, replace=False)
    elif scenario == "class":
        if classes:
            forget_classes = sorted(int(c) for c in classes)
        else:
            k = max(1, round(check_ratio(ratio) * num_classes))
            forget_classes = sorted(rng.choice(num_classes, size=k, replace=False).tolist())
        if len(forget_classes) >= num_classes:
            raise BenchmarkError("forget.classes covers every class; nothing would be retained")
        forget = train[np.isin(y, forget_classes)]
    elif scenario == "subclass":
        r = check_ratio(ratio)
        cls = int(classes[0]) if classes else int(rng.integers(num_classes))
        pos = train[y == cls]
        forget = rng.choice(pos, size=max(1, round(r * len(pos))), replace=False)
        forget_classes = None
    else:  # indices
        forget = _read_indices(indices_file, "forget.indices_file", train, val, len(labels))
        ratio = None
    forget = np.sort(forget).astype(np.int64)
    if retain_file:
        retain = _read_indices(retain_file, "forget.retain_file", train, val, len(labels))
        both = np.intersect1d(forget, retain)
        if len(both):
            raise BenchmarkError(f"forget.retain_file {retain_file}: {len(both)} indices (e.g. {both[0]}) are also in "
                                 "forget.indices_file; D_f and D_r must be disjoint")
        train = np.union1d(forget, retain).astype(np.int64)  # D = D_f + D_r: what theta_o trained on
    else:
        retain = np.setdiff1d(train, forget).astype(np.int64)
    if len(retain) == 0:
        raise BenchmarkError("the forget set covers all of D; lower the forget ratio")
    return Split(train=train, val=val, forget=forget, retain=retain, scenario=scenario,
                 ratio=None if ratio is None else float(ratio), seed=int(seed),
                 forget_classes=forget_classes)


def _read_indices(path: str | None, key: str, train: np.ndarray, val: np.ndarray, n_total: int) -> np.ndarray:
    """A file of official training-set indices (the value of config ``key``), checked:
    integers, no duplicates, in range, outside D_val and inside the training subset.
    Returns them sorted."""
    if not path:
        raise BenchmarkError(f"forget.scenario=indices needs {key}=PATH (.npy, .json or .txt)")
    p = Path(path)
    if not p.is_file():
        raise BenchmarkError(f"{key} {p} does not exist; pass a file of training-set indices")
    try:
        if p.suffix == ".npy":
            raw = np.load(p, allow_pickle=False)
        elif p.suffix == ".json":
            raw = np.asarray(json.loads(p.read_text()))
        else:
            raw = np.loadtxt(p, dtype=np.int64, ndmin=1)
    except (ValueError, OSError, json.JSONDecodeError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise BenchmarkError(f"cannot read {key} {p}: {msg}; write one integer index per line") from None
    raw = raw.ravel()
    if len(raw) == 0:
        raise BenchmarkError(f"{key} {p} holds no index")
    if raw.dtype == np.bool_ or not np.issubdtype(raw.dtype, np.integer):
        raise BenchmarkError(f"{key} {p} holds {raw.dtype} values, not integer indices; "
                             "save the indices as integers (e.g. np.save(path, idx.astype(np.int64)))")
    idx = raw.astype(np.int64)
    uniq, counts = np.unique(idx, return_counts=True)
    if len(uniq) < len(idx):
        dup = uniq[counts > 1]
        raise BenchmarkError(f"{key} {p}: {len(dup)} indices appear more than once (e.g. {dup[0]}); "
                             "list each index once")
    if uniq[0] < 0 or uniq[-1] >= n_total:
        raise BenchmarkError(f"{key} {p}: indices must lie in 0..{n_total - 1} (found {uniq[0] if uniq[0] < 0 else uniq[-1]})")
    in_val = np.isin(uniq, val)
    if in_val.any():
        raise BenchmarkError(
            f"{key} {p}: {int(in_val.sum())} indices fall in the validation hold-out; "
            "drop them, change data.split_seed, or set data.val_fraction=0")
    if not np.isin(uniq, train).all():
        raise BenchmarkError(f"{key} {p}: some indices are outside the training subset; "
                             "unset data.train_subset or drop them")
    return uniq
