"""SalUn: random labelling restricted to the weights most salient for the forget set.

"SalUn: Empowering Machine Unlearning via Gradient-based Weight Saliency in Both
Image Classification and Generation" (Fan et al., ICLR 2024,
https://arxiv.org/abs/2310.12508; code: github.com/OPTML-Group/Unlearn-Saliency).
The saliency of a weight is |dCE(theta_o; D_f)/dw|, summed over D_f's batches at
the original model; the top ``mask_ratio`` of all trainable weights (one global
threshold) are salient. Unlearning is then ``random_label``'s objective, with every
non-salient weight held at theta_o as a hard constraint.

Hyperparameters (docs/protocol.md section 6): ``mask_ratio`` 0.5 (share of weights that
may move, 0.1..0.9); SGD lr 0.013 (log 1e-3..1e-1), 10 epochs, momentum 0.9,
weight decay 5e-4, cosine schedule, batch 128 per stream.

Departures from the reference code:
- the mask is computed here, inside the timed unlearning phase, from the model being
  unlearned (the reference loads it from a separate script's file, and computes it on
  an untrained network when a checkpoint lacks its wrapper key);
- after every optimiser step the non-salient weights are copied back from theta_o
  and their optimiser state (momentum, Adam moments) is zeroed, so weight decay and
  momentum cannot move them by even one bit; the reference's gradient masking is then
  redundant (SGD and Adam act per coordinate) and is not done;
- saliency is taken in eval mode (as the reference) on D_f without augmentation (so the
  mask is deterministic), and exactly round(mask_ratio * N) weights are salient (ties
  at the threshold broken by ``topk``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from baselines.random_label import RandomLabel
from benchmark.losses import ce
from benchmark.module import METHODS, UnlearnData


def saliency_mask(saliency: list[torch.Tensor], ratio: float) -> list[torch.Tensor]:
    """Boolean masks marking the global top ``ratio`` of all entries of ``saliency``."""
    flat = torch.cat([s.flatten() for s in saliency])
    keep = torch.zeros_like(flat, dtype=torch.bool)
    keep[torch.topk(flat, round(ratio * flat.numel()), sorted=False).indices] = True
    return [m.view_as(s) for m, s in zip(keep.split([s.numel() for s in saliency]), saliency, strict=True)]


@METHODS.register()
class Salun(RandomLabel):
    search_space = {"lr": ("log", 1e-3, 1e-1), "epochs": ("int", 2, 20), "mask_ratio": ("float", 0.1, 0.9)}

    def __init__(self, net: nn.Module, data: UnlearnData, *, mask_ratio: float = 0.5, lr: float = 0.013,
                 **kw) -> None:
        if not 0.0 <= mask_ratio <= 1.0:
            raise ValueError(f"mask_ratio must be in [0, 1], not {mask_ratio}")
        super().__init__(net, data, lr=lr, **kw)
        self.save_hyperparameters(ignore=["net", "data"])
        self.mask: list[torch.Tensor] = []  # per trainable parameter, True = salient (may move)
        self._theta_o: list[torch.Tensor] = []

    def on_unlearn_start(self) -> None:
        params = self.trainable()
        saliency = [torch.zeros_like(p) for p in params]
        was_training = self.net.training
        self.net.eval()
        with torch.enable_grad():
            for b in self.iterate("forget"):
                grads = torch.autograd.grad(ce(self.net(b.x), b.y), params, allow_unused=True)
                for s, g in zip(saliency, grads, strict=True):
                    if g is not None:
                        s += g
        self.net.train(was_training)
        self.mask = saliency_mask([s.abs() for s in saliency], self.hparams.mask_ratio)
        self._theta_o = [p.detach().clone() for p in params]

    def after_optimizer_step(self, optimizer: Any) -> None:
        self._hold_non_salient(getattr(optimizer, "optimizer", optimizer))  # unwrap LightningOptimizer

    @torch.no_grad()
    def _hold_non_salient(self, optimizer: torch.optim.Optimizer) -> None:
        for p, keep, p0 in zip(self.trainable(), self.mask, self._theta_o, strict=True):
            p.copy_(torch.where(keep, p, p0))
            for state in optimizer.state.get(p, {}).values():
                if torch.is_tensor(state) and state.shape == p.shape:
                    state.masked_fill_(~keep, 0)
