"""Fine-tuning (FT) a generator: keep training theta_o on D_r only (the denoising loss).

The classifier ``finetune``'s idea: the forgotten class's conditioning gets no gradient
and fades by interference. As SalUn's DDPM scripts do for generators, Adam is the default
optimiser (the generators are trained with it; SGD at the classifiers' 0.01 barely moves
them in a few epochs).

Hyperparameters: Adam lr 1e-3 (log 1e-4..1e-2), 5 epochs over D_r (1..20), no weight
decay, cosine schedule, the dataset's batch size (method_defaults).
"""

from __future__ import annotations

from torch import nn

from baselines.finetune import Finetune as ClassifierFinetune
from benchmark.generative.methods import GEN_METHODS, Denoising
from benchmark.module import Batch, UnlearnData


@GEN_METHODS.register()
class Finetune(Denoising, ClassifierFinetune):
    search_space = {"lr": ("log", 1e-4, 1e-2), "epochs": ("int", 1, 20)}

    def __init__(self, net: nn.Module, data: UnlearnData, *, epochs: int = 5, lr: float = 1e-3,
                 optimizer: str = "adam", weight_decay: float = 0.0, **kw) -> None:
        super().__init__(net, data, epochs=epochs, lr=lr, optimizer=optimizer, weight_decay=weight_decay, **kw)

    def unlearn_step(self, batch: dict[str, Batch]) -> dict:
        return {"loss": self.denoise(batch["retain"])}
