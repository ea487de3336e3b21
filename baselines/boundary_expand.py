"""Boundary expanding: train D_f into an extra "shadow" class, then prune that class away.

"Boundary Unlearning: Rapid Forgetting of Deep Networks via Shifting the Decision
Space" (Chen et al., CVPR 2023, https://arxiv.org/abs/2303.11570); the SalUn /
l1-sparse code's ``boundary_ex``. The output layer ``fc`` gets one extra neuron;
the model is fine-tuned to map every forget example to it (CE towards class C),
which pulls D_f's features into a region no real class owns; removing the neuron
afterwards leaves D_f scattered over the nearest remaining classes.

Hyperparameters (docs/protocol.md section 6): SGD lr 1e-5 (scale 1e-6..1e-2), 10
epochs over D_f, momentum 0.9, weight decay 5e-4, constant learning rate.

On the digits preset D_f holds ~27 images, one batch: the reference recipe is then 10
SGD steps at lr 1e-5 and leaves every metric equal to the original's; with lr 1e-3 it
forgets (UA 21 +- 32, RA 91, 3 seeds).

Departures from the reference code: the extra neuron is really removed at the end
(``on_unlearn_end``), so the output layer, the state-dict keys and shapes equal the
original's (the reference never prunes it, a known defect); the new neuron's
initial weights come from a generator seeded with the cell's seed. The widening
runs in Lightning's ``configure_model`` hook, before the optimiser is built (so the
optimiser trains the new row), and its seconds are added to the unlearning time.
"""

from __future__ import annotations

import torch
from torch import nn

from benchmark.importance import output_layer, resize_output
from benchmark.losses import ce
from benchmark.module import METHODS, Batch, UnlearnData, UnlearnModule


@METHODS.register()
class BoundaryExpand(UnlearnModule):
    streams = ("forget",)
    search_space = {"lr": ("log", 1e-6, 1e-2), "epochs": ("int", 2, 20)}

    def __init__(self, net: nn.Module, data: UnlearnData, *, lr: float = 1e-5, scheduler: str = "constant",
                 **kw) -> None:
        """``kw``: the base class's optimiser arguments (boundary shrinking's reference recipe)."""
        output_layer(net)  # fail at construction, not mid-run, when there is no fc head
        super().__init__(net, data, lr=lr, scheduler=scheduler, **kw)

    def on_unlearn_setup(self) -> None:
        # before the optimiser is built, so that it trains the extra neuron (timed by the base)
        if output_layer(self.net).out_features == self.data.num_classes:
            resize_output(self.net, self.data.num_classes + 1, torch.Generator().manual_seed(self.data.seed))

    def on_unlearn_end(self) -> None:
        resize_output(self.net, self.data.num_classes)  # prune the shadow neuron

    def unlearn_step(self, batch: dict[str, Batch]) -> dict:
        b = batch["forget"]
        shadow = torch.full_like(b.y, self.data.num_classes)
        return {"loss": ce(self.net(b.x), shadow)}
