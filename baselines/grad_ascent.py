"""Gradient ascent (GA): maximise the cross-entropy on D_f.

"Unrolling SGD: Understanding Factors Influencing Machine Unlearning"
(Thudi et al., https://arxiv.org/abs/2109.13398); also the "NegGrad" baseline.
The update descends -CE(theta; b_f), so the forget loss grows without bound and
the method is very sensitive to the learning rate: too large collapses RA.

Hyperparameters (docs/protocol.md section 6): SGD lr 1e-4..1e-3 (default 5e-4),
5 epochs over D_f, momentum 0.9, no weight decay.
"""

from __future__ import annotations

from torch import nn

from benchmark.losses import ce
from benchmark.module import METHODS, Batch, UnlearnData, UnlearnModule


@METHODS.register()
class GradAscent(UnlearnModule):
    streams = ("forget",)
    search_space = {"lr": ("log", 1e-5, 1e-2), "epochs": ("int", 1, 10)}

    def __init__(self, net: nn.Module, data: UnlearnData, *, epochs: int = 5, lr: float = 5e-4,
                 weight_decay: float = 0.0, scheduler: str = "constant", **kw) -> None:
        super().__init__(net, data, epochs=epochs, lr=lr, weight_decay=weight_decay, scheduler=scheduler, **kw)

    def unlearn_step(self, batch: dict[str, Batch]) -> dict:
        b = batch["forget"]
        forget_ce = ce(self.net(b.x), b.y)
        return {"loss": -forget_ce, "forget_ce": forget_ce}
