"""Selective Synaptic Dampening (SSD): shrink the weights that matter far more to D_f than to D.

"Fast Machine Unlearning Without Retraining Through Selective Synaptic Dampening"
(Foster, Schoepf and Brintrup, AAAI 2024, https://arxiv.org/abs/2308.07707;
code: https://github.com/if-loops/selective-synaptic-dampening). No training: the
importance of each parameter is a diagonal Fisher estimate (mean squared gradient of
the CE loss) on D_f (I_f) and on the whole training set D (I_D). Parameters where
I_f > alpha * I_D are multiplied by min(1, lam * I_D / I_f); all others stay as they are.

Hyperparameters (docs/protocol.md section 6): ``alpha`` = 10 (selection threshold,
scale 1..100; the authors searched 0.1..100), ``lam`` = 1 (dampening, the paper's
lambda, scale 0.1..5), ``batch_size`` = 128 (the reference's; the importance is the
squared gradient of each mini-batch mean, so it depends on the batch size).

On the digits preset (3 seeds) it forgets a whole class (UA 100, RA 100) but barely
touches a random 10% (UA 1.2): D_f is then ~27 images, less than one batch, so I_f
is the squared gradient of a small-batch mean, noisier than D's full batches.

Departures from the reference code: importances use the evaluation transform
(no augmentation), so they are deterministic; only parameters that require grad
are considered (the reference zips ``named_parameters`` with importance dicts and
relies on their order matching).
"""

from __future__ import annotations

import torch
from torch import nn

from benchmark.importance import diag_fisher
from benchmark.module import METHODS, UnlearnData, UnlearnModule


def dampen(
    net: nn.Module, forget_imp: dict[str, torch.Tensor], all_imp: dict[str, torch.Tensor], alpha: float, lam: float
) -> int:
    """Scales theta by min(1, lam * I_D / I_f) where I_f > alpha * I_D; returns how many were selected."""
    selected = 0
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name not in forget_imp:
                continue
            i_f, i_d = forget_imp[name], all_imp[name]
            mask = i_f > alpha * i_d  # i_f > 0 here, so the division below is safe
            factor = (lam * i_d[mask] / i_f[mask]).clamp(max=1.0)
            p[mask] = p[mask] * factor
            selected += int(mask.sum())
    return selected


@METHODS.register()
class Ssd(UnlearnModule):
    one_shot = True
    search_space = {"alpha": ("log", 0.1, 100.0), "lam": ("log", 0.1, 5.0)}

    def __init__(
        self, net: nn.Module, data: UnlearnData, *, alpha: float = 10.0, lam: float = 1.0, batch_size: int = 128
    ) -> None:
        if alpha <= 0 or lam <= 0:
            raise ValueError(f"alpha and lam must be positive, got {alpha} and {lam}")
        super().__init__(net, data, batch_size=batch_size)
        self.save_hyperparameters(ignore=["net", "data"])

    def unlearn_once(self) -> dict[str, float]:
        hp = self.hparams
        forget_imp = diag_fisher(self.net, self.iterate("forget"))
        all_imp = diag_fisher(self.net, self.iterate("all"))
        selected = dampen(self.net, forget_imp, all_imp, hp.alpha, hp.lam)
        total = sum(p.numel() for p in self.trainable())
        return {"selected": selected, "selected_frac": selected / max(total, 1)}
