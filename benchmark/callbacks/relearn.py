"""The relearning attack and the relearning convergence delay (RCD), docs/protocol.md section 4.

The attack fine-tunes a deep copy of a model on the relearn set with a fixed step
budget and watches the forget loss on all of D_f come back. T(theta) is the first
evaluated step at which that loss is back within ``delta`` of the original's level,
L* = L_o + delta * (L_r - L_o); RCD = T(theta_u) / T(theta_r). The attacked model is
never changed (the attack works on a copy; a test compares the weights bit for bit).

``RelearnAttack`` is a Lightning ``Callback``: attach it to the unlearning trainer
and it attacks the unlearned network at ``on_fit_end``, after the method's own
``on_train_end`` (so the attack never counts as unlearning time). Rows without a
fit (the original, the oracle) call ``RelearnAttack.run`` directly.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from benchmark.data.transforms import BatchTransform
from benchmark.registry import Registry

ATTACKERS: Registry = Registry("attacker")


@ATTACKERS.register("sgd")
def sgd(params: list[nn.Parameter], lr: float = 0.01, momentum: float = 0.9, weight_decay: float = 0.0,
        **_: Any) -> torch.optim.Optimizer:
    """The attacker the paper's theory covers: SGD, lr 0.01, momentum 0.9, no weight decay."""
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)


@ATTACKERS.register("adam")
def adam(params: list[nn.Parameter], lr: float = 1e-3, weight_decay: float = 0.0, **_: Any) -> torch.optim.Optimizer:
    """A second, adaptive attacker: Adam, lr 1e-3."""
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)


@dataclass
class RelearnTarget:
    """The data of an attack: the relearn set (trained on) and D_f (always evaluated, all of it)."""

    train_x: torch.Tensor  # uint8 [N, C, H, W]
    train_y: torch.Tensor  # int64 [N]
    eval_x: torch.Tensor  # uint8 [M, C, H, W], all of D_f
    eval_y: torch.Tensor
    transform: BatchTransform


@dataclass
class Curve:
    """One attack's trajectory at the evaluated steps."""

    steps: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)  # mean CE on D_f
    acc: list[float] = field(default_factory=list)  # accuracy on D_f, percent
    weight_dist: list[float] = field(default_factory=list)  # ||theta_t - theta_o|| / ||theta_o||
    max_steps: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Curve:
        return cls(**d)


@dataclass(frozen=True)
class Levels:
    """The reference levels on D_f: L_o, L_r (mean CE) and A_o, A_r (accuracy) of theta_o, theta_r."""

    loss_original: float
    loss_oracle: float
    acc_original: float
    acc_oracle: float
    delta: float = 0.05

    @property
    def target_loss(self) -> float:  # L*
        return self.loss_original + self.delta * (self.loss_oracle - self.loss_original)

    @property
    def target_acc(self) -> float:  # A*, the accuracy twin
        return self.acc_oracle + (1 - self.delta) * (self.acc_original - self.acc_oracle)

    @property
    def undefined_reason(self) -> str | None:
        if self.loss_oracle - self.loss_original < 1e-3:
            return (f"nothing measurable was memorised: L_r - L_o = {self.loss_oracle - self.loss_original:.2e} "
                    "< 1e-3 (docs/protocol.md s.4)")
        return None


def default_budget(n_relearn: int, batch_size: int, epochs: int = 10) -> int:
    """``epochs`` passes over the relearn set (docs/protocol.md s.4 default: 10)."""
    return max(1, epochs * math.ceil(n_relearn / batch_size))


def default_eval_every(max_steps: int) -> int:
    return max(1, max_steps // 100)


def _flat(state: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.cat([v.detach().float().reshape(-1).cpu() for v in state.values()])


@torch.no_grad()
def _evaluate(net: nn.Module, x: torch.Tensor, y: torch.Tensor, tf: BatchTransform, device: torch.device,
              batch_size: int = 1024) -> tuple[float, float]:
    net.eval()
    loss_sum, correct = 0.0, 0
    for s in range(0, len(x), batch_size):
        xb, yb = tf(x[s:s + batch_size].to(device), train=False), y[s:s + batch_size].to(device)
        out = net(xb).float()
        loss_sum += F.cross_entropy(out, yb, reduction="sum").item()
        correct += (out.argmax(1) == yb).sum().item()
    return loss_sum / max(1, len(x)), 100.0 * correct / max(1, len(x))


def relearning_levels(original: nn.Module, oracle: nn.Module, forget_x: torch.Tensor, forget_y: torch.Tensor,
                      transform: BatchTransform, device: torch.device | str | None = None,
                      delta: float = 0.05) -> Levels:
    """The levels an attack is measured against: L_o, L_r (mean cross-entropy) and A_o, A_r
    (accuracy, percent) of theta_o and theta_r on all of D_f, with the evaluation transform.

    For attaching ``RelearnAttack`` to any run; the runner reads the same numbers from
    its cached outputs. Neither model is changed: each is evaluated where its weights
    are (or on ``device``) and put back in its device and train/eval mode afterwards.

    Args:
        original: theta_o.
        oracle: theta_r.
        forget_x: D_f's images, uint8 [M, C, H, W].
        forget_y: D_f's labels, int64 [M].
        transform: the batch transform (its normalisation is what the models expect).
        device: where to evaluate; default: where each model's parameters are.
        delta: the target's distance from L_o (docs/protocol.md s.4: 0.05).
    """
    values = []
    for net in (original, oracle):
        home = next((p.device for p in net.parameters()), torch.device("cpu"))
        where = torch.device(device) if device is not None else home
        was_training = net.training
        try:
            values.append(_evaluate(net.to(where), forget_x, forget_y, transform, where))
        finally:
            net.to(home).train(was_training)
    (loss_o, acc_o), (loss_r, acc_r) = values
    return Levels(loss_o, loss_r, acc_o, acc_r, float(delta))


def relearn(net: nn.Module, target: RelearnTarget, attacker: str, attacker_cfg: dict[str, Any], max_steps: int,
            eval_every: int, seed: int, device: torch.device, original_state: dict[str, torch.Tensor]) -> Curve:
    """Fine-tunes a deep copy of ``net`` on the relearn set; ``net`` itself is not touched.

    Args:
        original_state: theta_o's trainable parameters (name -> tensor), for the weight distance.
    """
    model = copy.deepcopy(net).to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    theta_o = _flat({n: original_state[n] for n in names})
    norm_o = float(theta_o.norm()) or 1.0
    opt = ATTACKERS.get(attacker)(params, **attacker_cfg)
    gen = torch.Generator().manual_seed(int(seed))
    bs = int(attacker_cfg.get("batch_size", 128))
    curve = Curve(max_steps=max_steps)
    t0 = time.perf_counter()

    def record(step: int) -> None:
        loss, acc = _evaluate(model, target.eval_x, target.eval_y, target.transform, device)
        dist = float((_flat(dict(zip(names, params, strict=True))) - theta_o).norm()) / norm_o
        curve.steps.append(step)
        curve.loss.append(loss)
        curve.acc.append(acc)
        curve.weight_dist.append(dist)

    record(0)
    step = 0
    n = len(target.train_y)
    while step < max_steps:
        for idx in torch.randperm(n, generator=gen).split(bs):
            model.train()
            x = target.transform(target.train_x[idx].to(device), train=True, generator=gen)
            loss = F.cross_entropy(model(x), target.train_y[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            if step % eval_every == 0 or step == max_steps:
                record(step)
            if step >= max_steps:
                break
    curve.seconds = time.perf_counter() - t0
    return curve


def convergence_step(curve: Curve, levels: Levels) -> tuple[int, bool]:
    """T(theta): the first evaluated step with forget loss <= L*; (max_steps, True) if never."""
    for s, loss in zip(curve.steps, curve.loss, strict=True):
        if loss <= levels.target_loss:
            return s, False
    return curve.max_steps, True


def recovery_gap(curve: Curve, levels: Levels) -> float:
    """Mean over evaluated steps of clip((L_t - L*) / (L_r - L*), 0, 1)."""
    denom = levels.loss_oracle - levels.target_loss
    if denom <= 0:
        return 0.0
    vals = [min(1.0, max(0.0, (v - levels.target_loss) / denom)) for v in curve.loss]
    return sum(vals) / len(vals)


class RelearnAttack(L.Callback):
    """Attacks the unlearned network after unlearning, with each configured attacker.

    Args:
        target: relearn set and D_f.
        attackers: name -> attacker settings (optimizer kwargs plus batch_size), e.g. from configs/attack/.
        max_steps: step budget (see ``default_budget``).
        eval_every: evaluation period in steps (see ``default_eval_every``).
        seed: the attack's own seed (shuffling and augmentation).
        original_state: theta_o's trainable parameters, for the weight-space trajectory.
        device: where the attack runs; default: the module's device.
    """

    def __init__(self, target: RelearnTarget, attackers: dict[str, dict[str, Any]], max_steps: int,
                 eval_every: int, seed: int, original_state: dict[str, torch.Tensor],
                 device: torch.device | None = None) -> None:
        super().__init__()
        self.target, self.attackers = target, attackers
        self.max_steps, self.eval_every, self.seed = int(max_steps), int(eval_every), int(seed)
        self.original_state, self.device = original_state, device
        self.curves: dict[str, Curve] = {}

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            self.run(pl_module.net, self.device or pl_module.device)

    def run(self, net: nn.Module, device: torch.device | None = None,
            progress: Callable[[str], None] | None = None) -> dict[str, Curve]:
        device = device or torch.device("cpu")
        self.curves = {name: relearn(net, self.target, name, dict(cfg), self.max_steps, self.eval_every,
                                     self.seed, device, self.original_state)
                       for name, cfg in self.attackers.items()}
        return self.curves
