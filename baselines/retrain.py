"""Retrain from scratch on D_r: the exact-unlearning oracle theta_r.

Re-initialises the network and trains it on the retain set with the dataset's
reference recipe (docs/protocol.md section 2: SGD, momentum 0.9, weight decay 5e-4,
cosine schedule, the dataset's epochs, learning rate and augmentation). The
runner reuses the cached oracle for this row, so its gaps are 0 by construction.

Hyperparameters: ``reinit`` (bool) — start from fresh weights (True for the
method; the reference trainer passes a freshly seeded network and False).
"""

from __future__ import annotations

from torch import nn

from benchmark.losses import ce
from benchmark.module import METHODS, Batch, UnlearnModule


@METHODS.register()
class Retrain(UnlearnModule):
    uses_recipe = True

    def __init__(self, net: nn.Module, data, *, reinit: bool = True, **kw) -> None:
        super().__init__(net, data, **kw)
        self.save_hyperparameters(ignore=["net", "data"])

    def on_unlearn_start(self) -> None:
        if self.hparams.reinit:
            for m in self.net.modules():
                if hasattr(m, "reset_parameters"):
                    m.reset_parameters()

    def unlearn_step(self, batch: dict[str, Batch]) -> dict:
        b = batch["retain"]
        return {"loss": ce(self.net(b.x), b.y)}
