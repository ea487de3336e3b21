"""Gradient ascent (GA) on a generator: maximise the denoising loss of D_f.

The classifier ``grad_ascent`` with the conditional denoising loss (no label dropout: the
ascent targets the forgotten class's conditioning, not the unconditional model). Unbounded,
so very sensitive to the learning rate: too many steps ruin every class.

Hyperparameters: Adam lr 1e-3 (log 1e-5..1e-2), 5 epochs over D_f (1..20), no weight
decay, constant schedule. Measured on digits (class 3, 10 steps): lr 1e-3 brings the forgotten
class's samples to 0% with the other classes at 99%; 4e-3 collapses every class (11%).
"""

from __future__ import annotations

from torch import nn

from baselines.grad_ascent import GradAscent as ClassifierGradAscent
from benchmark.generative.methods import GEN_METHODS, Denoising
from benchmark.module import Batch, UnlearnData


@GEN_METHODS.register()
class GradAscent(Denoising, ClassifierGradAscent):
    search_space = {"lr": ("log", 1e-5, 1e-2), "epochs": ("int", 1, 20)}

    def __init__(self, net: nn.Module, data: UnlearnData, *, epochs: int = 5, lr: float = 1e-3,
                 optimizer: str = "adam", **kw) -> None:
        super().__init__(net, data, epochs=epochs, lr=lr, optimizer=optimizer, **kw)

    def unlearn_step(self, batch: dict[str, Batch]) -> dict:
        forget = self.denoise(batch["forget"], p_uncond=0.0)
        return {"loss": -forget, "forget_denoise": forget.detach()}
