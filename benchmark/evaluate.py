"""One inference pass per model and split; every metric reads the cached outputs.

A model's outputs cover D (in the order of ``split.train``), D_val and D_test.
The forget and retain views are slices of the D outputs, so each training
example goes through the network exactly once per model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from benchmark.data import ImageData
from benchmark.data.splits import Split
from benchmark.data.transforms import BatchTransform
from benchmark.io import state_sha256
from benchmark.metrics import ModelOutputs, SplitOutputs, save_outputs
from benchmark.metrics.outputs import OutputsFormatError, read_outputs


@torch.no_grad()
def predict(net: nn.Module, images: torch.Tensor, labels: torch.Tensor, transform: BatchTransform,
            device: torch.device, batch_size: int = 1024) -> SplitOutputs:
    """Per-example logits and cross-entropy (both float32) of ``net`` on uint8 images."""
    was_training = net.training
    net.eval().to(device)
    logits, losses = [], []
    for start in range(0, len(images), batch_size):
        x = transform(images[start:start + batch_size].to(device), train=False)
        y = labels[start:start + batch_size].to(device)
        out = net(x).float()  # [B, C]
        logits.append(out.cpu())
        losses.append(F.cross_entropy(out, y, reduction="none").cpu())
    net.train(was_training)
    n_cls = getattr(getattr(net, "fc", None), "out_features", 0)
    cat_logits = torch.cat(logits).numpy() if logits else np.zeros((0, n_cls), np.float32)
    cat_loss = torch.cat(losses).numpy() if losses else np.zeros(0, np.float32)
    return SplitOutputs(logits=cat_logits, labels=labels.numpy().astype(np.int64), loss=cat_loss)


def full_outputs(net: nn.Module, ds: ImageData, split: Split, transform: BatchTransform,
                 device: torch.device, batch_size: int = 1024) -> ModelOutputs:
    """Outputs on D (train order), D_val and D_test: one pass each."""
    tr, va = torch.as_tensor(split.train), torch.as_tensor(split.val)
    return {
        "train": predict(net, ds.train_x[tr], ds.train_y[tr], transform, device, batch_size),
        "val": predict(net, ds.train_x[va], ds.train_y[va], transform, device, batch_size),
        "test": predict(net, ds.test_x, ds.test_y, transform, device, batch_size),
    }


def _take(o: SplitOutputs, pos: np.ndarray) -> SplitOutputs:
    return SplitOutputs(logits=o.logits[pos], labels=o.labels[pos], loss=o.loss[pos])


def split_view(full: ModelOutputs, split: Split) -> ModelOutputs:
    """forget/retain/val/test views of a model's full outputs for this split."""
    pos_f = np.searchsorted(split.train, split.forget)
    pos_r = np.searchsorted(split.train, split.retain)
    return {"forget": _take(full["train"], pos_f), "retain": _take(full["train"], pos_r),
            "val": full["val"], "test": full["test"]}


def cached_outputs(path: Path, net: nn.Module, ds: ImageData, split: Split, transform: BatchTransform,
                   device: torch.device, batch_size: int = 1024) -> ModelOutputs:
    """Loads a model's full outputs from ``path`` or computes and stores them.

    The file names the SHA-256 of the model state and of the split it was computed
    from; a file of another model or split (e.g. one copied over another), one of
    another format version (version 1 kept float16 logits), or one that is truncated
    or corrupt, is reported in one warning line and rebuilt."""
    expect = {"model_sha256": state_sha256(net), "split_sha256": split.sha256}
    if path.exists():
        why = None
        try:
            full, meta = read_outputs(path)
            if meta.get("model_sha256") != expect["model_sha256"]:
                why = "were computed from another model" if meta.get("model_sha256") else "do not name their model"
            elif meta.get("split_sha256") != expect["split_sha256"]:
                why = "were computed on another split"
            elif len(full.get("train", ())) != len(split.train) or not {"train", "val", "test"} <= set(full):
                why = "do not cover this split"
        except OutputsFormatError as e:
            why = f"were {e}"
        except Exception as e:  # noqa: BLE001 - any unreadable cache means: rebuild it
            why = f"are corrupt ({type(e).__name__}: {str(e)[:80]})"
        if why is None:
            return full
        print(f"warning: cached outputs {path} {why}; recomputing them", flush=True)
    full = full_outputs(net, ds, split, transform, device, batch_size)
    save_outputs(path, full, expect)
    return full


def non_finite(net: torch.nn.Module, full: ModelOutputs | None) -> str | None:
    """Why a model cannot be scored: a non-finite weight or buffer, or non-finite outputs."""
    for name, t in net.state_dict().items():
        if t.is_floating_point() and not torch.isfinite(t).all():
            return f"the unlearned model has non-finite values in {name}; lower the learning rate or fix the method"
    for split, so in (full or {}).items():
        if so.n_nonfinite:
            return f"the unlearned model gives non-finite outputs on {so.n_nonfinite} {split} example(s)"
    return None
