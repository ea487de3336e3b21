"""What generative methods share: their registry, their data and the denoising loss.

- :data:`GEN_METHODS`: the generative track's methods (``task=generate``), registered by
  ``baselines/generative/*.py`` under the same names as their classifier counterparts
  (``finetune``, ``ieu``, ...). A method of a classifier run and one of a generative run
  never meet, so the two registries never need distinct names; :func:`method_registry` picks
  one per run.
- :class:`GenData`: ``UnlearnData`` plus the :class:`~benchmark.generative.diffusion.Diffusion`
  (noise schedule, null class) the generator was trained with; images are transformed to
  [-1, 1] by the group's ``BatchTransform((0.5,), (0.5,))``, so the base class's loop,
  batching, logging and timing are the classifiers' own.
- :class:`Denoising`: the mixin that gives a method ``self.denoise(batch)``, the DDPM loss in
  place of cross-entropy.
- :class:`DenoisingTraining`: trains the reference generators with the recipe (as
  ``RecipeTraining`` trains the reference classifiers); deliberately not registered.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from benchmark.generative.diffusion import Diffusion, denoising_loss
from benchmark.module import METHODS, Batch, UnlearnData, UnlearnModule
from benchmark.registry import Registry

GEN_METHODS: Registry = Registry("generative method", base=UnlearnModule)

# classifier methods without a generative version, and why (named in the error a run gets)
NOT_FOR_GENERATORS: dict[str, str] = {
    "random_label": "its generative form is salun's label remapping (salun with mask_ratio=1.0)",
    "neggrad_plus": "ieu with weight_decay=0 and sigma=0 is its generative form",
    "l1_sparse": "not ported yet",
    "scrub": "distils logits (KL between class distributions); a generator has none",
    "boundary_shrink": "moves classification boundaries; a generator has none",
    "boundary_expand": "adds an output neuron to a classifier head; a generator has none",
    "ssd": "not ported yet",
    "fisher": "not ported yet",
    "bad_teacher": "distils class probabilities; esd is the generative distillation",
    "unsir": "learns error-maximising noise for a classifier's loss; not ported",
}


def method_registry(cfg: Any = None) -> Registry:
    """The registry of a run's task: ``GEN_METHODS`` for ``task=generate``, else ``METHODS``."""
    if cfg is not None and str(cfg.get("task", "classify") or "classify") == "generate":
        import baselines.generative  # noqa: F401  (registers the generative methods)

        return GEN_METHODS
    return METHODS


@dataclass
class GenData(UnlearnData):
    """``UnlearnData`` for a generator: the same images, index arrays and loop, plus the
    diffusion the generator was trained with."""

    diffusion: Diffusion | None = None


class Denoising:
    """Mixin for ``UnlearnModule`` subclasses: the denoising loss of a ``Batch``.

    The noise, timesteps and label dropout come from the global RNG (seeded once per cell
    by the runner), as the classifiers' dropout would."""

    data: GenData
    net: torch.nn.Module

    def denoise(self, b: Batch, labels: torch.Tensor | None = None, p_uncond: float | None = None,
                net: torch.nn.Module | None = None) -> torch.Tensor:
        """Mean DDPM loss of ``b.x`` conditioned on ``labels`` (default ``b.y``); ``p_uncond``
        None = the training dropout, 0 = conditional only."""
        return denoising_loss(net if net is not None else self.net, self.data.diffusion, b.x,
                              b.y if labels is None else labels, p_uncond=p_uncond)


class DenoisingTraining(Denoising, UnlearnModule):
    """Trains a reference generator with the recipe: the denoising loss on one index set,
    passed as the ``retain`` stream (D for the original, D_r for the oracle)."""

    streams = ("retain",)

    def unlearn_step(self, batch: dict[str, Batch]) -> dict[str, torch.Tensor]:
        return {"loss": self.denoise(batch["retain"])}


def diffusion_of(cfg: Any, ds: Any) -> Diffusion:
    """The run's :class:`Diffusion` (``data.diffusion`` of ``configs/generate/<dataset>.yaml``)."""
    d = cfg.data.diffusion
    return Diffusion(timesteps=int(d.timesteps), num_classes=int(ds.num_classes), p_uncond=float(d.p_uncond))


def check_generative_method(name: str) -> None:
    """A classifier method without a generative version fails in one line that says why."""
    import baselines.generative  # noqa: F401
    from benchmark.errors import BenchmarkError

    if name not in GEN_METHODS and name in NOT_FOR_GENERATORS:
        raise BenchmarkError(f"method {name!r} has no generative version ({NOT_FOR_GENERATORS[name]}); with "
                             f"task=generate use {', '.join(GEN_METHODS.names())}")
