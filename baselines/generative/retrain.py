"""Retrain the generator from scratch on D_r: the exact-unlearning oracle theta_r.

The classifier ``retrain`` with the denoising loss: the runner reuses the cached oracle
generator (trained by the reference stage with the generative recipe of
``configs/generate/<dataset>.yaml``) for this row, so its gaps are 0 by construction.

Hyperparameters: ``reinit`` (bool), as for classifiers.
"""

from __future__ import annotations

from baselines.retrain import Retrain as ClassifierRetrain
from benchmark.generative.methods import GEN_METHODS, Denoising
from benchmark.module import Batch


@GEN_METHODS.register()
class Retrain(Denoising, ClassifierRetrain):
    def unlearn_step(self, batch: dict[str, Batch]) -> dict:
        return {"loss": self.denoise(batch["retain"])}
