"""Random labelling (RL): fit D_f to wrong labels, then repair on D_r, every epoch.

"Amnesiac Machine Learning" (Graves, Nagisetty and Ganesh, AAAI 2021,
https://arxiv.org/abs/2010.10981), in the form SalUn's code runs it
(github.com/OPTML-Group/Unlearn-Saliency, ``unlearn/RL.py``). Each epoch is two
phases: one pass over D_f where every example gets a label drawn uniformly from the
*other* classes, then one pass over D_r with the true labels; both minimise CE.
Sequential phases, not mixed batches, because that is what the reference does on
CIFAR-10 and SVHN (its mixed-dataset branch is only taken for CIFAR-100 and
Tiny-ImageNet) and what docs/protocol.md section 6 prescribes.

Hyperparameters (docs/protocol.md section 6): SGD lr 0.01 (log 1e-3..1e-1), 10 epochs
(2..20), momentum 0.9, weight decay 5e-4, cosine schedule, batch 128 per stream.

Departures from the reference code: the wrong label is uniform over the C - 1 other
classes (the reference draws over all C, so 1/C of the "random" labels are the true
one); labels are redrawn every step, as in the reference, but from a generator seeded
with the cell's seed rather than the global RNG; the learning rate follows the
suite's cosine schedule instead of a step decay that never triggers in 10 epochs.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

import torch
from torch import nn

from benchmark.losses import ce, random_other_labels
from benchmark.module import METHODS, Batch, UnlearnData, UnlearnModule

LABEL_SEED_OFFSET = 7_919  # the label stream differs from the augmentation stream (seeded data.seed)


class Phase(Enum):
    FORGET = "forget"  # D_f with random wrong labels
    RETAIN = "retain"  # D_r with true labels


@METHODS.register()
class RandomLabel(UnlearnModule):
    streams = ("forget", "retain")
    search_space = {"lr": ("log", 1e-3, 1e-1), "epochs": ("int", 2, 20)}

    def __init__(self, net: nn.Module, data: UnlearnData, **kw) -> None:
        super().__init__(net, data, **kw)
        self._label_gen = torch.Generator().manual_seed(data.seed + LABEL_SEED_OFFSET)

    def phases(self, epoch: int) -> list[tuple[Phase, str]]:
        return [(Phase.FORGET, "forget"), (Phase.RETAIN, "retain")]

    def unlearn_step(self, batch: dict[str, Any]) -> dict:
        if batch["phase"] is Phase.FORGET:
            b: Batch = batch["forget"]
            wrong = random_other_labels(b.y, self.data.num_classes, self._label_gen)
            loss = ce(self.net(b.x), wrong)
            return {"loss": loss, "forget_random_ce": loss.detach()}
        b = batch["retain"]
        loss = ce(self.net(b.x), b.y)
        return {"loss": loss, "retain_ce": loss.detach()}
