"""Fine-tuning (FT): keep training theta_o on D_r only and hope D_f is forgotten.

Warnier et al. / Golatkar et al. use it as the cheapest baseline: "Eternal
Sunshine of the Spotless Net" (https://arxiv.org/abs/1911.04933). The objective
is the retain cross-entropy; catastrophic forgetting does the rest.

Hyperparameters (reference defaults, docs/protocol.md section 6): SGD lr 0.01
(scale 1e-3..1e-1), 10 epochs, momentum 0.9, weight decay 5e-4.
"""

from __future__ import annotations

from benchmark.losses import ce
from benchmark.module import METHODS, Batch, UnlearnModule


@METHODS.register()
class Finetune(UnlearnModule):
    streams = ("retain",)
    search_space = {"lr": ("log", 1e-3, 1e-1), "epochs": ("int", 2, 20)}

    def unlearn_step(self, batch: dict[str, Batch]) -> dict:
        b = batch["retain"]
        return {"loss": ce(self.net(b.x), b.y)}
