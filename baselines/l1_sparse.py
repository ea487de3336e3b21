"""l1-sparse: fine-tune on D_r with an L1 penalty whose weight decays linearly to 0.

"Model Sparsity Can Simplify Machine Unlearning" (Jia et al., NeurIPS 2023,
https://arxiv.org/abs/2304.04934; code: github.com/OPTML-Group/Unlearn-Sparse).
The objective is ``CE(theta; b_r) + a_t * ||theta||_1`` over all trainable
parameters: sparsity early in the run pushes weights that only D_f needed towards
0, and the penalty fades out (``a_t`` from ``alpha`` to 0) so the model can settle
on D_r.

Hyperparameters (docs/protocol.md section 6): ``alpha`` 5e-5 (log 1e-6..1e-3, needs
tuning: the penalty's size grows with the parameter count); SGD lr 0.01 (log
1e-3..1e-1), 10 epochs (2..20), momentum 0.9, weight decay 5e-4, cosine schedule,
batch 128.

Departures from the reference code: ``a_t = alpha * (1 - t / T)`` decays per step
t of the T optimiser steps (the reference decays per epoch, ``alpha * (1 - e / E)``,
so its last epoch still uses alpha / E); the suite's cosine learning-rate schedule
replaces a step decay that never triggers in 10 epochs.
"""

from __future__ import annotations

from torch import nn

from baselines.finetune import Finetune
from benchmark.losses import l1_norm
from benchmark.module import METHODS, Batch, UnlearnData


@METHODS.register()
class L1Sparse(Finetune):
    search_space = {"lr": ("log", 1e-3, 1e-1), "alpha": ("log", 1e-6, 1e-3), "epochs": ("int", 2, 20)}

    def __init__(self, net: nn.Module, data: UnlearnData, *, alpha: float = 5e-5, **kw) -> None:
        if alpha < 0:
            raise ValueError(f"alpha must be >= 0, not {alpha}")
        super().__init__(net, data, **kw)
        self.save_hyperparameters(ignore=["net", "data"])
        self.total_steps = 1

    def on_unlearn_start(self) -> None:
        self.total_steps = max(1, int(self.trainer.estimated_stepping_batches))

    def l1_coefficient(self, step: int | None = None) -> float:
        """``a_t`` at optimiser step ``step`` (default: the current one); 0 from step T on."""
        t = self.global_step if step is None else step
        return self.hparams.alpha * max(0.0, 1.0 - t / self.total_steps)

    def unlearn_step(self, batch: dict[str, Batch]) -> dict:
        retain_ce = super().unlearn_step(batch)["loss"]
        coef = self.l1_coefficient()
        penalty = l1_norm(self.net)
        return {"loss": retain_ce + coef * penalty, "retain_ce": retain_ce.detach(), "l1": penalty.detach(),
                "l1_coef": coef}
