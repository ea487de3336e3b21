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

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from benchmark.callbacks.relearn import (
    ATTACKERS,
    CRITERIA,
    REPEAT_SEED_STRIDE,
    Curve,
    Levels,
    RelearnAttack,
    _flat,
)
from benchmark.data.transforms import BatchTransform
from benchmark.generative.diffusion import Diffusion, denoising_loss
from benchmark.generative.evaluation import Evaluator, sample_classes
from benchmark.module import DeviceTransform, resident, to_device_async
from benchmark.stages.references import AttackPlan

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


def relearn_generator(net: nn.Module, target: GenRelearnTarget, attacker: str, attacker_cfg: dict[str, Any],
                      max_steps: int, eval_every: int, seed: int, device: torch.device,
                      original_state: dict[str, torch.Tensor], levels: Levels | None = None,
                      stop_after_tail: int | None = None,
                      progress: Callable[[int, int], None] | None = None) -> Curve:
    """``benchmark.callbacks.relearn.relearn`` for a generator: fine-tunes a deep copy of ``net``
    on the relearn set with the denoising loss; ``net`` itself is not touched."""
    model = copy.deepcopy(net).to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    theta_o = _flat({n: original_state[n] for n in names}).to(device)
    norm_o = float(theta_o.norm()) or 1.0
    opt = ATTACKERS.get(attacker)(params, **attacker_cfg)
    gen = torch.Generator().manual_seed(int(seed))
    bs = int(attacker_cfg.get("batch_size", 128))
    curve = Curve(max_steps=max_steps)
    t0 = time.perf_counter()
    forget_eval = GenForgetEval(target, device)
    train_x = DeviceTransform(target.transform, device)(resident(target.train_x, device), train=False)
    train_y = resident(target.train_y, device)
    stop_at, met = max_steps, set()

    def record(step: int) -> None:
        nonlocal stop_at
        loss, acc = forget_eval(model)
        flat = torch.cat([p.detach().float().reshape(-1) for p in params])
        curve.steps.append(step)
        curve.loss.append(loss)
        curve.acc.append(acc)
        curve.weight_dist.append(float((flat - theta_o).norm()) / norm_o)
        if stop_after_tail is not None and levels is not None and stop_at == max_steps:
            met.update(c for c in CRITERIA if levels.reached(loss, acc, c))
            if len(met) == len(CRITERIA):
                stop_at = min(max_steps, step + int(stop_after_tail))
        model.train()

    record(0)
    step, n = 0, len(train_y)
    while step < stop_at:
        order = to_device_async(torch.randperm(n, generator=gen), device)
        for idx in order.split(bs):
            loss = denoising_loss(model, target.diffusion, train_x[idx], train_y[idx], generator=gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            if step % eval_every == 0 or step == stop_at:
                record(step)
            if progress is not None:
                progress(step, stop_at)
            if step >= stop_at:
                break
    curve.truncated = stop_at < max_steps
    curve.seconds = time.perf_counter() - t0
    return curve


class GenRelearnAttack(RelearnAttack):
    """``RelearnAttack`` for generators: the same budgets, repeats and seeds, each run by
    :func:`relearn_generator`. Every repeat runs (the noise draws differ per seed even where
    the relearn set is one batch)."""

    def run(self, net: nn.Module, device: torch.device | None = None,
            progress: Callable[[int, int], None] | None = None) -> dict[str, list[Curve]]:
        from benchmark.training import ProgressLine

        device = device or torch.device("cpu")
        self.curves = {}
        for name, cfg in self.attackers.items():
            self.curves[name] = []
            for r in range(self.repeats):
                line = ProgressLine(f"attack {name}" + (f" {r + 1}/{self.repeats}" if self.repeats > 1 else ""))
                self.curves[name].append(relearn_generator(
                    net, self.target, name, dict(cfg), self.max_steps[name], self.eval_every[name],
                    self.seed + r * REPEAT_SEED_STRIDE, device, self.original_state, self.levels,
                    self.stop_after_tail, progress or line.update))
                line.close()
        return self.curves


class GenAttackPlan(AttackPlan):
    """The group's ``AttackPlan`` (budgets from the oracle, cached reference curves) whose
    callback attacks generators."""

    def callback(self) -> GenRelearnAttack:
        return GenRelearnAttack(self.target, self.attackers, self.max_steps, self.eval_every, self.seed,
                                self.original_state, levels=self.levels, stop_after_tail=self.stop_after_tail,
                                repeats=self.repeats)
