"""The original model theta_o (trained on D) and the retrain oracle theta_r (on D_r).

Both use the dataset's reference recipe (docs/protocol.md section 2) and are cached on
disk under ``<cache_dir>/models/<key>.pt`` where the key hashes everything that
determines them: dataset and subset, the split's hash (D only for the original),
model, recipe, augmentation, seed and protocol version. Each file has a SHA-256
sidecar; a truncated or corrupt file is reported in one line and retrained.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import nn

from benchmark.data.datasets import ImageData
from benchmark.data.splits import Split
from benchmark.data.transforms import BatchTransform
from benchmark.models import build_model
from benchmark.module import METHODS, UnlearnData
from benchmark.training import fit
from benchmark.version import PROTOCOL_VERSION


@dataclass
class Reference:
    """A trained reference model and what is known about it."""

    kind: str  # "original" | "oracle"
    key: str
    net: nn.Module
    train_seconds: float
    cached: bool


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def reference_key(kind: str, cfg: Any, split: Split, seed: int) -> str:
    """Cache key of a reference model: a hash of everything that determines it."""
    data = cfg.data
    fields = {
        "kind": kind,
        "dataset": str(data.name),
        "train_subset": data.train_subset,
        "split_seed": int(data.split_seed),
        "d_hash": split.base_sha256 if kind == "original" else split.sha256,
        "model": str(cfg.model),
        "recipe": dict(data.recipe),
        "augment": dict(data.augment),
        "seed": int(seed),
        "protocol": PROTOCOL_VERSION,
    }
    return f"{kind}-{_hash(fields)[:20]}"


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def atomic_torch_save(obj: Any, path: Path) -> None:
    """torch.save to a temporary file, then rename; the SHA-256 sidecar goes last."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(obj, tmp)
    digest = file_sha256(tmp)
    os.replace(tmp, path)
    side_tmp = path.with_name(f".{path.name}.sha256.{os.getpid()}.tmp")
    side_tmp.write_text(digest)
    os.replace(side_tmp, path.with_name(path.name + ".sha256"))


def load_checked(path: Path, what: str) -> Any | None:
    """Loads a file written by ``atomic_torch_save``; None (with one warning line) if it is
    missing, truncated or corrupt."""
    side = path.with_name(path.name + ".sha256")
    if not path.exists():
        return None
    try:
        if not side.exists() or side.read_text().strip() != file_sha256(path):
            raise ValueError("checksum mismatch")
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable cache means: rebuild it
        print(f"warning: cached {what} {path} is corrupt ({type(e).__name__}: {str(e)[:80]}); retraining it")
        return None


def get_reference(kind: str, cfg: Any, ds: ImageData, split: Split, transform: BatchTransform, seed: int) -> Reference:
    """Loads theta_o or theta_r (trained with ``seed``) from the cache, or trains and caches it."""
    key = reference_key(kind, cfg, split, seed)
    path = Path(cfg.cache_dir) / "models" / f"{key}.pt"
    net = _fresh_net(cfg, ds, seed)
    blob = load_checked(path, f"{kind} model")
    if blob is not None:
        try:
            net.load_state_dict(blob["state_dict"], strict=True)
            return Reference(kind, key, net, float(blob["train_seconds"]), cached=True)
        except (KeyError, RuntimeError) as e:
            print(f"warning: cached {kind} model {path} does not match the model ({str(e)[:80]}); retraining it")
            net = _fresh_net(cfg, ds, seed)
    train_idx = split.train if kind == "original" else split.retain
    data = UnlearnData(images=ds.train_x, labels=ds.train_y, forget=torch.as_tensor(split.forget),
                       retain=torch.as_tensor(train_idx), transform=transform, num_classes=ds.num_classes,
                       scenario=split.scenario, forget_classes=split.forget_classes, seed=seed)
    recipe = dict(cfg.data.recipe)
    module = METHODS.get("retrain")(net, data, reinit=False, scheduler="cosine", optimizer="sgd", **recipe)
    L.seed_everything(seed, workers=True, verbose=False)
    t0 = time.perf_counter()
    seconds = fit(module, cfg.trainer)
    wall = time.perf_counter() - t0
    net = module.net.cpu()
    atomic_torch_save({"state_dict": net.state_dict(), "train_seconds": seconds, "wall_seconds": wall}, path)
    return Reference(kind, key, net, seconds, cached=False)


def _fresh_net(cfg: Any, ds: ImageData, seed: int) -> nn.Module:
    # the same seed gives theta_o and theta_r the same initialisation
    L.seed_everything(seed, workers=True, verbose=False)
    return build_model(str(cfg.model), ds.num_classes, ds.in_channels)
