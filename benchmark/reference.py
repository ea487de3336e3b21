"""The original model theta_o (trained on D) and the retrain oracle theta_r (on D_r).

Each is either trained here or brought from outside:

- **Trained** with the dataset's reference recipe (docs/protocol.md section 2) by
  ``RecipeTraining``, a small unregistered module of this file (a reference is not a
  method: swapping the ``retrain`` plugin must never change theta_o). Cached under
  ``<cache_dir>/models/<key>.pt`` where the key hashes everything that determines the
  model: dataset and subset, the split's hash (D only for the original), model, recipe,
  augmentation, a normalisation override, seed, protocol version and the trainer settings
  that change the weights (world size and precision, where not 1 and 32-bit). Each file has a
  SHA-256 sidecar; a truncated or corrupt file is reported in one line and retrained.
- **Brought**: ``reference.original`` / ``reference.oracle`` name a checkpoint trained
  elsewhere (a ``state_dict``, or ``{"state_dict": ...}``) of the architecture
  ``model=NAME`` (a registered network, possibly from ``imports=[...]``). It loads
  with ``weights_only=True``, strict keys and checked shapes; any mismatch is one
  ``BenchmarkError`` line naming the file and the fix. Its key hashes the file's
  SHA-256, so a changed file is never mistaken for a cached one. Its training time is
  unknown (``train_seconds`` is None), which leaves RTE undefined.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import lightning as L
import torch
from omegaconf import DictConfig, ListConfig, OmegaConf
from torch import nn

from benchmark.data.splits import Split
from benchmark.data.transforms import BatchTransform
from benchmark.errors import BenchmarkError
from benchmark.io import atomic_torch_save, file_sha256, load_checked, sha256_bytes
from benchmark.losses import ce
from benchmark.models import build_model
from benchmark.module import Batch, UnlearnData, UnlearnModule
from benchmark.training import fit, world_size
from benchmark.version import REFERENCE_PROTOCOL

if TYPE_CHECKING:
    from benchmark.data import ImageData

KINDS = ("original", "oracle")


@dataclass
class Reference:
    """A reference model and what is known about it."""

    kind: str  # "original" | "oracle"
    key: str
    net: nn.Module
    train_seconds: float | None  # None: brought from a checkpoint, training time unknown
    cached: bool
    checkpoint: str | None = None  # the file a brought model was loaded from
    checkpoint_sha256: str | None = None


class RecipeTraining(UnlearnModule):
    """Trains a reference model with the dataset's recipe: cross-entropy on one index
    set, passed as the ``retain`` stream (D for theta_o, D_r for theta_r), with the base
    class's SGD (momentum, coupled weight decay) and per-step cosine schedule.

    Deliberately not registered in ``METHODS``: references are the fixed points every
    method is measured against, so no plugin may change how they are trained.
    """

    streams = ("retain",)

    def unlearn_step(self, batch: dict[str, Batch]) -> dict[str, torch.Tensor]:
        b = batch["retain"]
        return {"loss": ce(self.net(b.x), b.y)}


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def _plain(value: Any) -> Any:
    """OmegaConf nodes -> plain lists/dicts (for hashing)."""
    if isinstance(value, DictConfig | ListConfig):
        return OmegaConf.to_container(value, resolve=True)
    return value


def normalize_override(cfg: Any) -> dict[str, Any] | None:
    """``data.normalize`` when it overrides the dataset's statistics, else None (so the
    keys of models trained with the dataset's own statistics are those of before)."""
    norm = _plain(cfg.data.get("normalize") or {})
    if norm.get("mean") is None and norm.get("std") is None:
        return None
    return {"mean": norm.get("mean"), "std": norm.get("std")}


def checkpoint_path(kind: str, cfg: Any) -> Path | None:
    """The checkpoint ``reference.<kind>`` names, or None to train the model here.

    Raises:
        BenchmarkError: the file does not exist.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    value = (cfg.get("reference") or {}).get(kind)
    if value in (None, ""):
        return None
    path = Path(str(value)).expanduser()
    if not path.is_file():
        raise BenchmarkError(f"reference.{kind}={value}: no such file ({path.resolve()}); pass the path of a "
                             f"state_dict checkpoint, or reference.{kind}=null to train it with the recipe")
    return path


def reference_key(kind: str, cfg: Any, split: Split, seed: int, checkpoint_sha256: str | None = None) -> str:
    """Cache key of a reference model: a hash of everything that determines it (and, for
    a brought model, of everything that determines its cached outputs: the file's
    SHA-256, computed here unless given, the architecture, D and the normalisation)."""
    data = cfg.data
    d_hash = split.base_sha256 if kind == "original" else split.sha256
    path = checkpoint_path(kind, cfg)
    if path is not None:
        fields: dict[str, Any] = {
            "kind": kind, "checkpoint_sha256": checkpoint_sha256 or file_sha256(path), "model": str(cfg.model),
            "dataset": str(data.name), "train_subset": data.train_subset, "split_seed": int(data.split_seed),
            "d_hash": d_hash, "normalize": normalize_override(cfg), "protocol": REFERENCE_PROTOCOL,
        }
        return f"{kind}-file-{_hash(fields)[:20]}"
    fields = {
        "kind": kind,
        "dataset": str(data.name),
        "train_subset": data.train_subset,
        "split_seed": int(data.split_seed),
        "d_hash": d_hash,
        "model": str(cfg.model),
        "recipe": dict(data.recipe),
        "augment": dict(data.augment),
        "seed": int(seed),
        "protocol": REFERENCE_PROTOCOL,
    }
    norm = normalize_override(cfg)
    if norm is not None:  # only when set, so that default keys (and caches) stay valid
        fields["normalize"] = norm
    if data.get("diffusion") is not None:  # a generator (task=generate): its noise schedule and dropout
        fields["diffusion"] = _plain(data.diffusion)
    fields.update(training_identity(cfg.get("trainer")))
    return f"{kind}-{_hash(fields)[:20]}"


def training_identity(trainer_cfg: Any) -> dict[str, Any]:
    """The trainer settings that change a trained reference's weights, each only where it
    differs from one process in 32-bit precision (so default keys, and caches, stay valid):
    the world size (DDP shards every batch: devices x batch_size per step) and the precision."""
    tc = dict(_plain(trainer_cfg) or {})
    out: dict[str, Any] = {}
    ws = world_size(tc)
    if ws != 1:
        out["world_size"] = ws
    precision = str(tc.get("precision", "32-true"))
    if precision not in ("32", "32-true"):
        out["precision"] = precision
    return out


def _few(items: list[str], n: int = 5) -> str:
    more = f" (+{len(items) - n} more)" if len(items) > n else ""
    return "[" + ", ".join(items[:n]) + "]" + more


def _prefix_hint(ckpt_keys: list[str], own_keys: list[str]) -> str:
    """A hint when every checkpoint key is a model key under one extra prefix
    (``module.`` from DDP, ``net.`` from a LightningModule, ``_orig_mod.`` from compile)."""
    heads = {k.split(".", 1)[0] for k in ckpt_keys}
    if len(heads) == 1 and all("." in k for k in ckpt_keys):
        head = heads.pop()
        if {k.split(".", 1)[1] for k in ckpt_keys} == set(own_keys):
            return (f"; its keys carry the prefix '{head}.': save the bare network's state_dict "
                    f"(e.g. torch.save(model.{head}.state_dict(), path))")
    return ""


def load_checkpoint(net: nn.Module, path: str | Path, model: str, data: bytes | None = None) -> nn.Module:
    """Loads a checkpoint into ``net`` strictly: ``weights_only=True``, every key present,
    no extra key, every shape equal.

    Args:
        net: a freshly built network of the architecture ``model``.
        path: a ``state_dict`` file, or a dict holding one under ``"state_dict"``.
        model: the architecture's registry name (for the error message).
        data: the file's bytes, if already read (so that what is hashed is what is loaded).

    Raises:
        BenchmarkError: one line naming the file and the fix, if the file cannot be
            read or does not match the network.
    """
    path = Path(path)
    try:
        blob = torch.load(io.BytesIO(path.read_bytes() if data is None else data), map_location="cpu",
                          weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the same user error
        why = (str(e).strip().splitlines() or [type(e).__name__])[0][:120]
        raise BenchmarkError(f"cannot read checkpoint {path} ({type(e).__name__}: {why}); save it with "
                             "torch.save(model.state_dict(), path): tensors only, it is loaded with "
                             "weights_only=True") from None
    state = blob
    if isinstance(blob, Mapping) and isinstance(blob.get("state_dict"), Mapping):
        state = blob["state_dict"]
    if not (isinstance(state, Mapping) and state
            and all(isinstance(k, str) and torch.is_tensor(v) for k, v in state.items())):
        raise BenchmarkError(f"checkpoint {path} holds no state_dict (names -> tensors); save "
                             "torch.save(model.state_dict(), path) or {'state_dict': model.state_dict()}")
    own = net.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} {list(state[k].shape)} vs {list(own[k].shape)}"
              for k in own if k in state and state[k].shape != own[k].shape]
    problems = []
    if missing:
        problems.append(f"missing keys {_few(missing)}")
    if unexpected:
        problems.append(f"unexpected keys {_few(unexpected)}")
    if shapes:
        problems.append(f"shapes differ (checkpoint vs model) {_few(shapes)}")
    if problems:
        hint = _prefix_hint(list(state), list(own)) if missing else ""
        raise BenchmarkError(f"checkpoint {path} does not match model '{model}': {'; '.join(problems)}; "
                             f"pass model=NAME of the architecture it was trained with{hint}")
    net.load_state_dict(state, strict=True)
    return net


def get_reference(kind: str, cfg: Any, ds: ImageData, split: Split, transform: BatchTransform,
                  seed: int, known: Mapping[str, Reference] | None = None) -> Reference:
    """theta_o or theta_r: loaded from ``reference.<kind>`` when given; otherwise one of ``known``
    (reference key -> a model another process trained or loaded: ``executor=ray`` passes them as
    objects), from the cache, or trained with ``seed`` and the recipe and cached."""
    path = checkpoint_path(kind, cfg)
    if known and path is None:
        ref = known.get(reference_key(kind, cfg, split, seed))
        if ref is not None:
            return Reference(kind, ref.key, ref.net, ref.train_seconds, cached=True)
    net = _fresh_net(cfg, ds, seed)
    if path is not None:
        try:
            data = path.read_bytes()  # hashed and loaded from the same bytes
        except OSError as e:
            raise BenchmarkError(f"cannot read checkpoint {path} ({e.strerror or e}); check reference.{kind}") from None
        sha = sha256_bytes(data)
        load_checkpoint(net, path, str(cfg.model), data)
        key = reference_key(kind, cfg, split, seed, checkpoint_sha256=sha)
        return Reference(kind, key, net, None, cached=False, checkpoint=str(path), checkpoint_sha256=sha)
    key = reference_key(kind, cfg, split, seed)
    file = Path(cfg.cache_dir) / "models" / f"{key}.pt"
    blob = load_checked(file, f"{kind} model")
    if blob is not None:
        try:
            net.load_state_dict(blob["state_dict"], strict=True)
            return Reference(kind, key, net, float(blob["train_seconds"]), cached=True)
        except (KeyError, RuntimeError, TypeError) as e:
            print(f"warning: cached {kind} model {file} does not match the model ({str(e)[:80]}); retraining it")
            net = _fresh_net(cfg, ds, seed)
    train_idx = split.train if kind == "original" else split.retain
    fields = dict(images=ds.train_x, labels=ds.train_y, forget=torch.as_tensor(split.forget),
                  retain=torch.as_tensor(train_idx), transform=transform, num_classes=ds.num_classes,
                  scenario=split.scenario, forget_classes=split.forget_classes, seed=seed)
    recipe = {"scheduler": "cosine", "optimizer": "sgd", **dict(cfg.data.recipe)}
    if cfg.data.get("diffusion") is not None:  # a generator: the denoising loss (benchmark.generative)
        from benchmark.generative.methods import DenoisingTraining, GenData, diffusion_of

        module = DenoisingTraining(net, GenData(**fields, diffusion=diffusion_of(cfg, ds)), **recipe)
    else:
        module = RecipeTraining(net, UnlearnData(**fields), **recipe)
    L.seed_everything(seed, workers=True, verbose=False)
    t0 = time.perf_counter()
    seconds = fit(module, cfg.trainer)
    wall = time.perf_counter() - t0
    net = module.net.cpu()
    atomic_torch_save({"state_dict": net.state_dict(), "train_seconds": seconds, "wall_seconds": wall}, file)
    return Reference(kind, key, net, seconds, cached=False)


def _fresh_net(cfg: Any, ds: ImageData, seed: int) -> nn.Module:
    # the same seed gives theta_o and theta_r the same initialisation
    L.seed_everything(seed, workers=True, verbose=False)
    return build_model(str(cfg.model), ds.num_classes, ds.in_channels)
