"""Class-conditional denoising diffusion: the noise schedule, the DDPM training loss and a
deterministic DDIM sampler with classifier-free guidance (docs/protocol.md s.8).

- Forward process (Ho et al., 2020, https://arxiv.org/abs/2006.11239): x_t = sqrt(abar_t) x_0
  + sqrt(1 - abar_t) eps with the cosine schedule of Nichol & Dhariwal (2021,
  https://arxiv.org/abs/2102.09672); the network predicts eps.
- Conditioning: label ``num_classes`` is the null class; training drops a label to it with
  probability ``p_uncond`` so one network is both conditional and unconditional
  (Ho & Salimans, classifier-free guidance, https://arxiv.org/abs/2207.12598).
- Sampling: DDIM with eta = 0 (Song et al., https://arxiv.org/abs/2010.02502) on ``steps``
  evenly spaced timesteps, guided eps = (1 + w) eps(x, c) - w eps(x, null), predicted x_0
  clipped to [-1, 1]. Given the starting noise it is deterministic; the noise comes from a
  ``torch.Generator`` seeded by the caller, so a seed fixes the samples.

Images live in [-1, 1] (uint8 / 127.5 - 1, the transform ``BatchTransform((0.5,), (0.5,))``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class Diffusion:
    """The noise schedule and the conditioning convention shared by training, unlearning and
    sampling.

    Attributes:
        timesteps: T, the number of diffusion steps of training.
        num_classes: classes of the dataset; label ``num_classes`` is the null class.
        p_uncond: probability that a training label is dropped to the null class.
    """

    timesteps: int = 200
    num_classes: int = 10
    p_uncond: float = 0.1

    def __post_init__(self) -> None:
        if self.timesteps < 2:
            raise ValueError(f"timesteps must be >= 2, not {self.timesteps}")
        if not 0.0 <= self.p_uncond < 1.0:
            raise ValueError(f"p_uncond must be in [0, 1), not {self.p_uncond}")

    @property
    def null_label(self) -> int:
        return self.num_classes

    def alpha_bar(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """abar_t for t = 0..T-1 (float32 [T]), the cosine schedule with s = 0.008, clipped to
        keep every beta under 0.999."""
        s, steps = 0.008, self.timesteps
        t = torch.arange(steps + 1, dtype=torch.float64) / steps
        f = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
        abar = f / f[0]
        betas = (1 - abar[1:] / abar[:-1]).clamp(max=0.999)
        return torch.cumprod(1 - betas, 0).float().to(device)


def drop_labels(y: torch.Tensor, diffusion: Diffusion, p: float | None = None) -> torch.Tensor:
    """``y`` with each label replaced by the null class with probability ``p`` (default
    ``diffusion.p_uncond``), from the global RNG on ``y``'s device."""
    p = diffusion.p_uncond if p is None else p
    if p <= 0:
        return y
    return torch.where(torch.rand(y.shape, device=y.device) < p, torch.full_like(y, diffusion.null_label), y)


def noisy(x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor, abar: torch.Tensor) -> torch.Tensor:
    """x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps; x0, eps [B, C, H, W], t [B]."""
    a = abar[t].view(-1, 1, 1, 1)
    return a.sqrt() * x0 + (1 - a).sqrt() * eps


def denoising_loss(net: nn.Module, diffusion: Diffusion, x0: torch.Tensor, y: torch.Tensor,
                   p_uncond: float | None = None, generator: torch.Generator | None = None,
                   reduction: str = "mean") -> torch.Tensor:
    """The DDPM loss ||eps - eps_theta(x_t, t, y)||^2 at uniformly drawn t, mean over pixels.

    Args:
        x0: clean images in [-1, 1], [B, C, H, W].
        y: labels [B] (the null class allowed); dropped to the null class with ``p_uncond``
            (default ``diffusion.p_uncond``; 0 = conditional only).
        generator: draws t, eps and the label drop (a CPU generator: the same draws on any
            device); None = the global RNG on x0's device.
        reduction: "mean" (a scalar) or "none" (per example, [B]).
    """
    b, dev = x0.shape[0], x0.device
    if generator is not None:
        t = torch.randint(0, diffusion.timesteps, (b,), generator=generator).to(dev)
        eps = torch.randn(x0.shape, generator=generator).to(dev)
        p = diffusion.p_uncond if p_uncond is None else p_uncond
        drop = torch.rand(b, generator=generator).to(dev) < p
        y = torch.where(drop, torch.full_like(y, diffusion.null_label), y)
    else:
        t = torch.randint(0, diffusion.timesteps, (b,), device=dev)
        eps = torch.randn_like(x0)
        y = drop_labels(y, diffusion, p_uncond)
    abar = diffusion.alpha_bar(dev)
    pred = net(noisy(x0, t, eps, abar), t, y)
    per = F.mse_loss(pred.float(), eps, reduction="none").flatten(1).mean(1)
    return per.mean() if reduction == "mean" else per


def guided_eps(net: nn.Module, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor, diffusion: Diffusion,
               guidance: float) -> torch.Tensor:
    """Classifier-free guidance: (1 + w) eps(x, t, y) - w eps(x, t, null), in one batched pass."""
    if guidance == 0:
        return net(x, t, y).float()
    null = torch.full_like(y, diffusion.null_label)
    out = net(torch.cat([x, x]), torch.cat([t, t]), torch.cat([y, null])).float()
    cond, uncond = out.chunk(2)
    return (1 + guidance) * cond - guidance * uncond


@torch.no_grad()
def ddim_sample(net: nn.Module, diffusion: Diffusion, labels: torch.Tensor, shape: tuple[int, int, int],
                steps: int = 20, guidance: float = 2.0, seed: int = 0, batch_size: int = 512,
                device: torch.device | str | None = None) -> torch.Tensor:
    """Deterministic DDIM (eta = 0) samples of ``net`` conditioned on ``labels``.

    The starting noise of sample i depends only on ``seed``, ``shape`` and i (it is drawn for
    all samples at once on the CPU), so the same seed gives the same samples in any batch size
    and on any device up to float rounding. ``net`` is evaluated in eval mode and put back in
    its previous mode.

    Args:
        labels: int64 [N] conditioning labels (the null class gives unconditional samples).
        shape: (C, H, W) of one image.
        steps: DDIM steps (evenly spaced over the T training timesteps, at least 1).
        guidance: classifier-free guidance weight w (0 = the conditional model alone).
        seed: seeds the starting noise.

    Returns:
        float32 [N, C, H, W] images in [-1, 1], on the CPU.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, not {steps}")
    device = torch.device(device) if device is not None else next(net.parameters()).device
    was_training = net.training
    net.eval()
    try:
        noise = torch.randn((len(labels), *shape), generator=torch.Generator().manual_seed(int(seed)))
        abar = diffusion.alpha_bar(device)
        ts = torch.linspace(diffusion.timesteps - 1, 0, steps).round().long().tolist()
        ts = list(dict.fromkeys(ts))  # distinct, descending
        out = []
        for s in range(0, len(labels), batch_size):
            x = noise[s:s + batch_size].to(device)
            y = labels[s:s + batch_size].to(device)
            for i, t in enumerate(ts):
                tt = torch.full((len(y),), t, device=device, dtype=torch.long)
                eps = guided_eps(net, x, tt, y, diffusion, guidance)
                a_t = abar[t]
                x0 = ((x - (1 - a_t).sqrt() * eps) / a_t.sqrt()).clamp(-1, 1)
                if i + 1 == len(ts):
                    x = x0
                else:
                    a_prev = abar[ts[i + 1]]
                    eps = (x - a_t.sqrt() * x0) / (1 - a_t).sqrt()  # eps consistent with the clipped x0
                    x = a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps
            out.append(x.float().cpu())
        return torch.cat(out) if out else torch.empty((0, *shape))
    finally:
        net.train(was_training)


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1] -> uint8 [0, 255] (the dataset's storage format)."""
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
