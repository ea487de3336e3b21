"""NegGrad+: fine-tune on D_r while ascending the loss on D_f, in one weighted objective.

Introduced as a strong baseline in "Towards Unbounded Machine Unlearning" (Kurmanji,
Triantafillou, Hayes and Triantafillou, NeurIPS 2023, https://arxiv.org/abs/2302.09880;
code: github.com/meghdadk/SCRUB). Every step pairs a retain batch with a forget batch
and descends ``a * CE(theta; b_r) - (1 - a) * CE(theta; b_f)``: the retain term keeps
RA and TA while the small negative term pushes the forget loss up. ``a = 1`` is plain
fine-tuning, ``a = 0`` gradient ascent.

Hyperparameters (docs/protocol.md section 6): ``a`` 0.95 (0.5..1); SGD lr 0.01 (log
1e-3..1e-1), 10 epochs over D_r (2..20; D_f cycles), momentum 0.9, weight decay 5e-4,
cosine schedule, batch 128 per stream.

Departures from the reference code: none in the objective; the two batches pass the
network separately (retain first), so BatchNorm sees each set's own statistics.
"""

from __future__ import annotations

from torch import nn

from benchmark.losses import ce
from benchmark.module import METHODS, Batch, UnlearnData, UnlearnModule


@METHODS.register()
class NeggradPlus(UnlearnModule):
    streams = ("retain", "forget")
    search_space = {"lr": ("log", 1e-3, 1e-1), "a": ("float", 0.5, 1.0), "epochs": ("int", 2, 20)}

    def __init__(self, net: nn.Module, data: UnlearnData, *, a: float = 0.95, **kw) -> None:
        if not 0.0 <= a <= 1.0:
            raise ValueError(f"a must be in [0, 1], not {a}")
        super().__init__(net, data, **kw)
        self.save_hyperparameters(ignore=["net", "data"])

    def unlearn_step(self, batch: dict[str, Batch]) -> dict:
        r, f = batch["retain"], batch["forget"]
        retain_ce = ce(self.net(r.x), r.y)
        forget_ce = ce(self.net(f.x), f.y)
        a = self.hparams.a
        return {"loss": a * retain_ce - (1 - a) * forget_ce, "retain_ce": retain_ce.detach(),
                "forget_ce": forget_ce.detach()}
