"""Negative-guidance erasure (ESD-style) for a class-conditional generator.

"Erasing Concepts from Diffusion Models" (Gandikota et al., ICCV 2023,
https://arxiv.org/abs/2303.07345). A frozen copy of theta_o is the teacher; the student's
conditional prediction for the forgotten class is distilled towards the teacher's
*negatively guided* one, eps_o(x_t, null) - eta (eps_o(x_t, c_f) - eps_o(x_t, null)), so that
sampling with c_f steers away from the class. A retain term, ``retain_weight`` times the
denoising loss of D_r, keeps the other classes (ESD has none; without it, the shared
weights drift).

Hyperparameters: ``eta`` 1.0 (negative guidance scale, 0.5..3); ``retain_weight`` 1.0;
Adam lr 1e-3 (log 1e-4..1e-2), 5 epochs over D_r, no weight decay, cosine schedule.

Departures from ESD: x_t is D_f's images noised at a uniform timestep (the forward process),
not partial trajectories sampled from the model with a text prompt; the conditioning is a
class label, and every parameter is trained (ESD-u/ESD-x choose attention layers).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.generative.diffusion import noisy
from benchmark.generative.methods import GEN_METHODS, Denoising
from benchmark.module import Batch, UnlearnData, UnlearnModule


@GEN_METHODS.register()
class Esd(Denoising, UnlearnModule):
    streams = ("forget", "retain")
    search_space = {"lr": ("log", 1e-4, 1e-2), "epochs": ("int", 1, 20), "eta": ("float", 0.5, 3.0)}

    def __init__(self, net: nn.Module, data: UnlearnData, *, eta: float = 1.0, retain_weight: float = 1.0,
                 epochs: int = 5, lr: float = 1e-3, optimizer: str = "adam", weight_decay: float = 0.0,
                 **kw) -> None:
        if eta < 0 or retain_weight < 0:
            raise ValueError(f"eta and retain_weight must be >= 0, got {eta} and {retain_weight}")
        super().__init__(net, data, epochs=epochs, lr=lr, optimizer=optimizer, weight_decay=weight_decay, **kw)
        self.save_hyperparameters(ignore=["net", "data"])

    def on_unlearn_start(self) -> None:
        self.freeze_copy("teacher")

    def unlearn_step(self, batch: dict[str, Batch]) -> dict:
        bf, br = batch["forget"], batch["retain"]
        d = self.data.diffusion
        t = torch.randint(0, d.timesteps, (len(bf.y),), device=bf.x.device)
        eps = torch.randn_like(bf.x)
        x_t = noisy(bf.x, t, eps, d.alpha_bar(bf.x.device))
        with torch.no_grad():
            null = torch.full_like(bf.y, d.null_label)
            both = self.teacher(torch.cat([x_t, x_t]), torch.cat([t, t]), torch.cat([bf.y, null]))
            cond, uncond = both.chunk(2)
            target = uncond - self.hparams.eta * (cond - uncond)
        erase = F.mse_loss(self.net(x_t, t, bf.y), target)
        retain = self.denoise(br)
        return {"loss": erase + self.hparams.retain_weight * retain, "erase": erase.detach(),
                "retain_denoise": retain.detach()}
