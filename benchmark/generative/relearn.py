"""The relearning attack and RCD for generators (docs/protocol.md s.8).

The attacker fine-tunes a deep copy of the unlearned generator on the relearn set (D_f's
images with their labels) with the denoising loss, using the classifiers' attackers
(``ATTACKERS``: SGD, Adam) and settings. At step 0 and every ``eval_every`` steps it records:

- ``acc``: the evaluator's accuracy (percent) on a fixed-seed batch of samples conditioned
  on the forgotten class(es) (``generate.attack_samples`` per class; the same starting
  noise at every evaluated step and for every model of the group);
- ``loss``: the conditional denoising loss of all of D_f at fixed draws of t and eps (the
  same draws at every step and for every model), the loss-based twin.

The curves are the classifiers' :class:`~benchmark.callbacks.relearn.Curve`, so T, the
levels (A_o, A_r of the original's and the oracle's samples; L_o, L_r their D_f denoising
losses), censoring, the repeats and every RCD metric are the classifiers' own code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from benchmark.callbacks.relearn import AttackTask, Levels
from benchmark.data.transforms import BatchTransform
from benchmark.generative.diffusion import Diffusion, denoising_loss
from benchmark.generative.evaluation import Evaluator, sample_classes
from benchmark.module import DeviceTransform, resident

LOSS_SEED_OFFSET = 65_537  # the fixed draws of the loss criterion
ACC_SEED_OFFSET = 92_821  # the fixed starting noise of the accuracy criterion's samples


@dataclass
class GenRelearnTarget:
    """The data and the judge of a generator attack."""

    train_x: torch.Tensor  # uint8 [N, C, H, W], the relearn set
    train_y: torch.Tensor
    eval_x: torch.Tensor  # uint8, all of D_f (the loss criterion)
    eval_y: torch.Tensor
    transform: BatchTransform  # to [-1, 1]
    diffusion: Diffusion
    evaluator: Evaluator
    classes: list[int]  # the forgotten classes (the accuracy criterion samples them)
    per_class: int  # samples per class at each evaluated step
    sampler: dict[str, Any]  # sample_steps, guidance
    seed: int  # the group's seed: fixes the criterion's draws
    seeded_steps: ClassVar[bool] = True  # each step draws noise: every attack repeat differs

    def task(self, device: torch.device) -> AttackTask:
        """What a generator attack does at a step and an evaluation (``relearn``'s one loop)."""
        return _GeneratorTask(self, device)


class GenForgetEval:
    """(loss, acc) of a generator on the forgotten classes, with draws fixed per target."""

    def __init__(self, target: GenRelearnTarget, device: torch.device) -> None:
        self.t, self.device = target, device
        self.x = DeviceTransform(target.transform, device)(resident(target.eval_x, device), train=False)
        self.y = resident(target.eval_y, device)

    @torch.no_grad()
    def __call__(self, net: nn.Module) -> tuple[float, float]:
        t = self.t
        was = net.training
        net.eval()
        gen = torch.Generator().manual_seed(t.seed + LOSS_SEED_OFFSET)
        loss = float(denoising_loss(net, t.diffusion, self.x, self.y, p_uncond=0.0, generator=gen))
        fake = sample_classes(net, t.diffusion, t.classes, t.per_class, tuple(t.eval_x.shape[1:]),
                              _Cfg(t.sampler), t.seed + ACC_SEED_OFFSET, self.device)
        labels = torch.as_tensor(t.classes).repeat_interleave(t.per_class)
        acc = float((t.evaluator.logits(fake).argmax(1) == labels).float().mean() * 100)
        net.train(was)
        return loss, acc


class _Cfg:
    def __init__(self, d: dict[str, Any]) -> None:
        self.sample_steps, self.guidance = int(d["sample_steps"]), float(d["guidance"])


def generator_levels(original: nn.Module, oracle: nn.Module, target: GenRelearnTarget, device: torch.device,
                     delta: float = 0.05, delta_acc: float = 0.05) -> Levels:
    """L_o, L_r (D_f denoising losses) and A_o, A_r (forget-class sample accuracy) of theta_o and
    theta_r, measured exactly as every attack step is."""
    ev = GenForgetEval(target, device)
    (lo, ao), (lr, ar) = ev(original.to(device)), ev(oracle.to(device))
    return Levels(lo, lr, ao, ar, float(delta), float(delta_acc))


class _GeneratorTask(AttackTask):
    """Denoising-loss steps on the relearn set (normalised once; the noise and t come from the
    attack's generator); D_f's loss and the forget-class sample accuracy from ``GenForgetEval``."""

    def __init__(self, target: GenRelearnTarget, device: torch.device) -> None:
        self.t, self.forget_eval = target, GenForgetEval(target, device)
        self.x = DeviceTransform(target.transform, device)(resident(target.train_x, device), train=False)
        self.y = resident(target.train_y, device)
        self.n = len(self.y)

    def step_loss(self, model: nn.Module, idx: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return denoising_loss(model, self.t.diffusion, self.x[idx], self.y[idx], generator=generator)

    def evaluate(self, model: nn.Module, dist: torch.Tensor) -> tuple[float, float, float]:
        loss, acc = self.forget_eval(model)
        return loss, acc, float(dist)
