"""Scoring a generator without any download (docs/protocol.md s.8).

- :func:`get_evaluator`: a classifier trained by the suite on the dataset's official training
  set (every class: it is a judge, not a model under test) with the dataset's classifier
  recipe, cached under ``<cache_dir>/models/evaluator-<key>.pt`` like a reference model (the
  key hashes dataset, model, recipe, seed and protocol).
- :func:`score_generator`: a fixed-seed batch of ``samples_per_class`` DDIM samples per
  class, the evaluator's accuracy on each class's samples, and FID and KID of the remaining
  classes' samples against the held-out real test images of those classes, in the feature
  space of the evaluator's penultimate layer (the input of its ``fc``). Inception-v3 weights
  cannot be downloaded here; ``generate.features=inception`` uses torchmetrics' Inception
  features where a user has its weights (``torch-fidelity`` installed and cached).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import nn

from benchmark.data.transforms import BatchTransform
from benchmark.errors import BenchmarkError
from benchmark.generative.diffusion import Diffusion, ddim_sample, to_uint8
from benchmark.io import atomic_torch_save, load_checked
from benchmark.models import build_model
from benchmark.module import UnlearnData
from benchmark.version import REFERENCE_PROTOCOL

SAMPLE_SEED_OFFSET = 31_337  # the evaluation samples' noise differs from every training stream


@dataclass
class Evaluator:
    """The judge of generated samples: a trained classifier and its input transform."""

    net: nn.Module
    transform: BatchTransform
    key: str
    test_acc: float  # percent, on the official test set
    train_seconds: float

    @torch.no_grad()
    def logits(self, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
        """Logits of uint8 images [N, C, H, W] (float32 [N, classes], on the CPU)."""
        return self._run(x, batch_size, features=False)

    @torch.no_grad()
    def features(self, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
        """Penultimate features (the input of ``fc``) of uint8 images: float32 [N, F]."""
        return self._run(x, batch_size, features=True)

    def _run(self, x: torch.Tensor, batch_size: int, features: bool) -> torch.Tensor:
        self.net.eval()
        dev = next(self.net.parameters()).device
        out, grabbed = [], []
        hook = self.net.fc.register_forward_hook(lambda m, inp, o: grabbed.append(inp[0])) if features else None
        try:
            for s in range(0, len(x), batch_size):
                xb = self.transform(x[s:s + batch_size].to(dev), train=False)
                logits = self.net(xb)
                out.append((grabbed.pop() if features else logits).float().cpu())
        finally:
            if hook is not None:
                hook.remove()
        return torch.cat(out) if out else torch.empty(0)


class _Features(nn.Module):
    """The evaluator's penultimate layer as a torchmetrics feature extractor (uint8 in)."""

    def __init__(self, evaluator: Evaluator, num_features: int) -> None:
        super().__init__()
        self.evaluator, self.num_features = evaluator, num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.evaluator.features(x.to(torch.uint8)).double()


def evaluator_key(cfg: Any) -> str:
    ev = cfg.data.evaluator
    fields = {"dataset": str(cfg.data.name), "split_seed": int(cfg.data.split_seed), "model": str(ev.model),
              "recipe": dict(ev.recipe), "seed": int(ev.seed), "protocol": REFERENCE_PROTOCOL}
    return "evaluator-" + hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()[:20]


def get_evaluator(cfg: Any, ds: Any, device: torch.device) -> Evaluator:
    """The dataset's evaluator classifier, from the cache or trained (and cached)."""
    from benchmark.reference import RecipeTraining
    from benchmark.training import fit

    ev = cfg.data.evaluator
    key = evaluator_key(cfg)
    tf = BatchTransform(tuple(ds.mean), tuple(ds.std))
    L.seed_everything(int(ev.seed), workers=True, verbose=False)
    net = build_model(str(ev.model), ds.num_classes, ds.in_channels)
    file = Path(cfg.cache_dir) / "models" / f"{key}.pt"
    blob = load_checked(file, "evaluator")
    if blob is not None:
        net.load_state_dict(blob["state_dict"], strict=True)
        seconds = float(blob["train_seconds"])
    else:
        everything = torch.arange(len(ds.train_y))
        data = UnlearnData(images=ds.train_x, labels=ds.train_y, forget=everything[:0], retain=everything,
                           transform=tf, num_classes=ds.num_classes, seed=int(ev.seed))
        module = RecipeTraining(net, data, scheduler="cosine", optimizer="sgd", **dict(ev.recipe))
        seconds = fit(module, cfg.trainer)
        net = module.net.cpu()
        atomic_torch_save({"state_dict": net.state_dict(), "train_seconds": seconds}, file)
    net = net.to(device).eval()
    evaluator = Evaluator(net, tf, key, 0.0, seconds)
    pred = evaluator.logits(ds.test_x).argmax(1)
    evaluator.test_acc = float((pred == ds.test_y).float().mean() * 100)
    return evaluator


@dataclass
class SampleEval:
    """A generator's scores on one fixed-seed sample batch."""

    class_acc: dict[int, float]  # class -> evaluator accuracy (percent) on that class's samples
    forget_classes: list[int]
    fid: float | None = None
    kid: float | None = None
    kid_std: float | None = None
    n_fake: int = 0
    n_real: int = 0
    seconds: float = 0.0
    grid: torch.Tensor | None = field(default=None, repr=False)  # uint8 [classes, k, C, H, W] for figures

    @property
    def remain_classes(self) -> list[int]:
        return [c for c in sorted(self.class_acc) if c not in self.forget_classes]

    def forget_acc(self) -> float:
        return float(np.mean([self.class_acc[c] for c in self.forget_classes]))

    def remain_acc(self) -> float:
        return float(np.mean([self.class_acc[c] for c in self.remain_classes]))

    def to_dict(self) -> dict[str, Any]:
        return {"class_acc": {str(k): v for k, v in self.class_acc.items()}, "fid": self.fid, "kid": self.kid,
                "kid_std": self.kid_std, "n_fake": self.n_fake, "n_real": self.n_real}


def sample_classes(net: nn.Module, diffusion: Diffusion, classes: list[int], per_class: int, shape: tuple,
                   gen_cfg: Any, seed: int, device: torch.device) -> torch.Tensor:
    """uint8 [len(classes) * per_class, C, H, W]: ``per_class`` fixed-seed samples of each class
    (class-major), with the run's sampler settings (``generate.sample_steps``, ``guidance``)."""
    labels = torch.as_tensor(classes, dtype=torch.long).repeat_interleave(per_class)
    x = ddim_sample(net, diffusion, labels, shape, steps=int(gen_cfg.sample_steps),
                    guidance=float(gen_cfg.guidance), seed=seed, device=device)
    return to_uint8(x)


def score_generator(net: nn.Module, diffusion: Diffusion, evaluator: Evaluator, real_x: torch.Tensor,
                    real_y: torch.Tensor, forget_classes: list[int], gen_cfg: Any, seed: int,
                    device: torch.device, grid_per_class: int = 8) -> SampleEval:
    """Samples every class with the same seed and scores them (see the module docstring).

    Args:
        real_x, real_y: held-out real images (uint8) and labels: the official test set.
        seed: the group's seed; the samples' noise is seeded ``seed + SAMPLE_SEED_OFFSET``, so
            every model of a group is scored on the same starting noise.
    """
    t0 = time.perf_counter()
    k = int(gen_cfg.samples_per_class)
    classes = list(range(diffusion.num_classes))
    shape = tuple(real_x.shape[1:])
    fake = sample_classes(net, diffusion, classes, k, shape, gen_cfg, seed + SAMPLE_SEED_OFFSET, device)
    labels = torch.as_tensor(classes).repeat_interleave(k)
    pred = evaluator.logits(fake).argmax(1)
    class_acc = {c: float((pred[labels == c] == c).float().mean() * 100) for c in classes}
    res = SampleEval(class_acc, list(forget_classes), n_fake=0)
    res.grid = fake.view(len(classes), k, *shape)[:, :grid_per_class].clone()
    remain = [c for c in classes if c not in forget_classes]
    f_mask = torch.isin(labels, torch.as_tensor(remain))
    r_mask = torch.isin(real_y, torch.as_tensor(remain))
    res.n_fake, res.n_real = int(f_mask.sum()), int(r_mask.sum())
    res.fid, res.kid, res.kid_std = fid_kid(fake[f_mask], real_x[r_mask], evaluator, str(gen_cfg.features), seed)
    res.seconds = time.perf_counter() - t0
    return res


def fid_kid(fake: torch.Tensor, real: torch.Tensor, evaluator: Evaluator, features: str,
            seed: int) -> tuple[float, float, float]:
    """(FID, KID mean, KID std) of uint8 ``fake`` against uint8 ``real``, with torchmetrics.

    ``features="evaluator"``: the evaluator's penultimate features; ``"inception"``:
    torchmetrics' Inception-v3 pool features (needs its weights: torch-fidelity, cached)."""
    import warnings

    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.kid import KernelInceptionDistance

    subset = max(2, min(100, len(fake), len(real)))
    if features == "evaluator":
        dim = int(evaluator.features(real[:2]).shape[1])
        extractor: Any = _Features(evaluator, dim)
        fake_in, real_in = fake, real
    elif features == "inception":
        extractor = 2048
        fake_in, real_in = _rgb(fake), _rgb(real)
    else:
        raise BenchmarkError(f"generate.features={features!r}; use evaluator or inception")
    warnings.filterwarnings("ignore", message=r".*will save all extracted features in buffer.*")
    try:
        fid = FrechetInceptionDistance(feature=extractor, reset_real_features=True)
        kid = KernelInceptionDistance(feature=extractor if features == "evaluator" else 2048, subset_size=subset)
    except (ModuleNotFoundError, RuntimeError, OSError) as e:
        raise BenchmarkError(f"generate.features=inception needs torchmetrics' Inception weights ({type(e).__name__}); "
                             "pip install torch-fidelity with the weights cached, or use generate.features=evaluator"
                             ) from None
    for metric in (fid, kid):
        metric.update(real_in, real=True)
        metric.update(fake_in, real=False)
    fid_v = float(fid.compute())
    with torch.random.fork_rng(devices=[]):  # KID's subsets come from the global RNG: fix them
        torch.manual_seed(int(seed))
        kid_m, kid_s = kid.compute()
    return fid_v, float(kid_m), float(kid_s)


def _rgb(x: torch.Tensor) -> torch.Tensor:
    return x.expand(-1, 3, -1, -1).contiguous() if x.shape[1] == 1 else x
