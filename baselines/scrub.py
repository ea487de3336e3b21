"""SCRUB: a student that stays close to its teacher on D_r and moves away from it on D_f.

"Towards Unbounded Machine Unlearning" (Kurmanji, Triantafillou, Hayes and
Triantafillou, NeurIPS 2023, https://arxiv.org/abs/2302.09880; code:
github.com/meghdadk/SCRUB). The teacher is a frozen copy of theta_o and the student
starts from theta_o. With d = KL(p_teacher || p_student) at temperature T (batchmean,
scaled by T^2, as the reference's ``DistillKL`` and the paper's d(x; w)), each of the
first ``msteps`` epochs opens with a max phase (one pass over D_f descending -d); every
epoch then runs a min phase (one pass over D_r descending gamma * CE + alpha * d).
Note that d and its gradient are 0 while student and teacher agree, so the first max
step only moves a network whose train-mode forward differs from the teacher's eval-mode
one (BatchNorm, dropout); an MLP leaves theta_o through weight decay and min steps first.

Hyperparameters (docs/protocol.md section 6): ``msteps`` 2 (max phases, 1..epochs);
``gamma`` 0.99 (CE weight); ``alpha`` 0.001 (KL weight on D_r, log 1e-4..1);
``temperature`` 4; SGD lr 5e-4 (log 1e-4..1e-2), 3 epochs, momentum 0.9, weight decay
5e-4, constant rate (the reference's step decay never triggers in 3 epochs), batch 128.
With ``scheduler: cosine`` the schedule is sized by the first (longest) epoch, so the
rate does not quite reach 0.

Departures from the reference code: the KL direction is the reference's
KL(teacher || student) (as docs/protocol.md's table says; some write-ups of SCRUB
write KL(student || teacher), which is neither the code nor the paper). The max phases are the first min(msteps, epochs)
epochs, 0-based (the reference's ``epoch <= msteps`` counts from 1; code that loops
from 0 runs msteps + 1). No SWA averaging (the reference's ``sstart`` is past the
last epoch in its own settings).
"""

from __future__ import annotations

from enum import Enum
from typing import Any

import torch
from torch import nn

from benchmark.losses import ce, kl_to_teacher
from benchmark.module import METHODS, Batch, UnlearnData, UnlearnModule


class Phase(Enum):
    MAX = "max"  # move away from the teacher on D_f
    MIN = "min"  # stay with the teacher (and the labels) on D_r


@METHODS.register()
class Scrub(UnlearnModule):
    streams = ("forget", "retain")
    search_space = {"lr": ("log", 1e-4, 1e-2), "msteps": ("int", 1, 5), "alpha": ("log", 1e-4, 1.0),
                    "epochs": ("int", 2, 10)}

    def __init__(self, net: nn.Module, data: UnlearnData, *, msteps: int = 2, gamma: float = 0.99,
                 alpha: float = 0.001, temperature: float = 4.0, epochs: int = 3, lr: float = 5e-4,
                 scheduler: str = "constant", **kw) -> None:
        if msteps < 0 or temperature <= 0:
            raise ValueError(f"need msteps >= 0 and temperature > 0, got {msteps} and {temperature}")
        super().__init__(net, data, epochs=epochs, lr=lr, scheduler=scheduler, **kw)
        self.save_hyperparameters(ignore=["net", "data"])
        self.max_phases = 0  # max phases run so far
        self._phase: Phase | None = None

    def on_unlearn_start(self) -> None:
        self.freeze_copy("teacher")

    def phases(self, epoch: int) -> list[tuple[Phase, str]]:
        head = [(Phase.MAX, "forget")] if epoch < self.hparams.msteps else []
        return head + [(Phase.MIN, "retain")]


    def unlearn_step(self, batch: dict[str, Any]) -> dict:
        phase: Phase = batch["phase"]
        if phase is not self._phase:
            self._phase = phase
            self.max_phases += phase is Phase.MAX
        b: Batch = batch["forget" if phase is Phase.MAX else "retain"]
        logits = self.net(b.x)
        with torch.no_grad():
            teacher = self.teacher(b.x)
        kl = kl_to_teacher(logits, teacher, self.hparams.temperature)
        if phase is Phase.MAX:
            return {"loss": -kl, "forget_kl": kl.detach()}
        retain_ce = ce(logits, b.y)
        hp = self.hparams
        return {"loss": hp.gamma * retain_ce + hp.alpha * kl, "retain_ce": retain_ce.detach(),
                "retain_kl": kl.detach()}
