"""The relearning attack and the relearning convergence delay (RCD), docs/protocol.md section 4.

The attack fine-tunes a deep copy of a model on the relearn set and watches D_f's
knowledge come back. Two criteria (protocol 1.1): T_acc(theta), the headline, is the
first evaluated step at which forget accuracy is back to A* = A_o - delta_acc (A_o - A_r);
T(theta), the loss companion, the first at which the forget loss is back to
L* = L_o + delta (L_r - L_o). Each attack is repeated over ``repeats`` attack seeds and
T is the mean; RCD = T(theta_u) / T(theta_r). The attacked model is never changed (the
attack works on a copy; a test compares the weights bit for bit).

``RelearnAttack`` is a Lightning ``Callback``: attach it to the unlearning trainer
and it attacks the unlearned network at ``on_fit_end``, after the method's own
``on_train_end`` (so the attack never counts as unlearning time). Rows without a
fit (the original, the oracle) call ``RelearnAttack.run`` directly.

Speed: the relearn set and D_f live on the attack's device (copied once per target), a
batch is a slice of a per-pass permutation copied there without a host sync, D_f is
normalised once per attack and evaluated in no-grad batches whose sums stay on the device
until the one read per evaluated step. ``stop_after_tail=K`` stops an attacker K steps
after both criteria were first met (each T is unchanged; the curve is marked truncated).
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
from benchmark.module import DeviceTransform, resident, to_device_async
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

    def task(self, device: torch.device) -> AttackTask:
        """What an attack on a classifier does at a step and at an evaluation, on ``device``."""
        return _ClassifierTask(self, device)


class AttackTask:
    """The model-specific part of an attack, for :func:`relearn`'s one loop: the size of the relearn
    set, the loss of one step on a batch of its indices, and the evaluation of D_f. A target
    (``RelearnTarget``, the generative track's ``GenRelearnTarget``) makes one per attack with
    ``target.task(device)``."""

    n: int

    def step_loss(self, model: nn.Module, idx: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        raise NotImplementedError

    def evaluate(self, model: nn.Module, dist: torch.Tensor) -> tuple[float, float, float]:
        """(forget loss, forget accuracy in percent, ``dist`` as a float), read from the device together."""
        raise NotImplementedError


class _ClassifierTask(AttackTask):
    """Cross-entropy steps on the (augmented) relearn set; mean CE and accuracy on all of D_f."""

    def __init__(self, target: RelearnTarget, device: torch.device) -> None:
        self.forget_eval = _ForgetEval(target.eval_x, target.eval_y, target.transform, device)
        self.x, self.y = resident(target.train_x, device), resident(target.train_y, device)
        self.tf = DeviceTransform(target.transform, device)
        self.n = len(self.y)

    def step_loss(self, model: nn.Module, idx: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return F.cross_entropy(model(self.tf(self.x[idx], train=True, generator=generator)), self.y[idx])

    def evaluate(self, model: nn.Module, dist: torch.Tensor) -> tuple[float, float, float]:
        sums = self.forget_eval(model)
        # one host read per evaluated step: loss sum, correct count, weight distance
        loss_sum, correct, d = torch.cat([sums, dist.double().view(1)]).tolist()
        m = max(1, self.forget_eval.n)
        return loss_sum / m, 100.0 * int(correct) / m, d


@dataclass
class Curve:
    """One attack's trajectory at the evaluated steps."""

    steps: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)  # mean CE on D_f
    acc: list[float] = field(default_factory=list)  # accuracy on D_f, percent
    weight_dist: list[float] = field(default_factory=list)  # ||theta_t - theta_o|| / ||theta_o||
    max_steps: int = 0
    seconds: float = 0.0
    truncated: bool = False  # stopped early (``stop_after_tail``): steps after the last are not measured

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Curve:
        return cls(**d)


@dataclass(frozen=True)
class Levels:
    """The reference levels on D_f: L_o, L_r (mean CE) and A_o, A_r (accuracy) of theta_o, theta_r.

    ``delta`` places the loss target L* = L_o + delta (L_r - L_o); ``delta_acc`` the accuracy
    target A* = A_o - delta_acc (A_o - A_r) (docs/protocol.md s.4)."""

    loss_original: float
    loss_oracle: float
    acc_original: float
    acc_oracle: float
    delta: float = 0.05
    delta_acc: float = 0.05

    @property
    def target_loss(self) -> float:  # L*
        return self.loss_original + self.delta * (self.loss_oracle - self.loss_original)

    @property
    def target_acc(self) -> float:  # A*
        return self.acc_original - self.delta_acc * (self.acc_original - self.acc_oracle)

    @property
    def undefined_reason(self) -> str | None:
        """Why the loss criterion's RCD is undefined here (None: it is defined)."""
        if self.loss_oracle - self.loss_original < 1e-3:
            return (f"nothing measurable was memorised: L_r - L_o = {self.loss_oracle - self.loss_original:.2e} "
                    "< 1e-3 (docs/protocol.md s.4)")
        return None

    @property
    def acc_undefined_reason(self) -> str | None:
        """Why the accuracy criterion's RCD is undefined here (None: it is defined)."""
        if self.acc_original - self.acc_oracle < 1.0:
            return (f"no measurable forget-accuracy gap: A_o - A_r = {self.acc_original - self.acc_oracle:.2f} "
                    "< 1 point (docs/protocol.md s.4)")
        return None

    def reached(self, loss: float, acc: float, criterion: str) -> bool:
        """Whether an evaluated step meets ``criterion`` ("loss": loss <= L*, "acc": acc >= A*)."""
        if criterion == "loss":
            return loss <= self.target_loss
        if criterion == "acc":
            return acc >= self.target_acc - 1e-9
        raise ValueError(f"unknown criterion {criterion!r}; use 'loss' or 'acc'")


CRITERIA = ("acc", "loss")  # the headline criterion first


def default_budget(n_relearn: int, batch_size: int, epochs: int = 10) -> int:
    """``epochs`` passes over the relearn set (docs/protocol.md s.4 default: 10)."""
    return max(1, epochs * math.ceil(n_relearn / batch_size))


def default_eval_every(max_steps: int) -> int:
    return max(1, max_steps // 100)


def _flat(state: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.cat([v.detach().float().reshape(-1).cpu() for v in state.values()])


class _ForgetEval:
    """Mean CE and accuracy on all of D_f, on the device: the evaluation transform is applied
    once (it is deterministic), batches of ``batch_size`` (the numerics of ``_evaluate``), sums
    accumulated on the device in float64 and read once per call."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, tf: BatchTransform, device: torch.device,
                 batch_size: int = 1024) -> None:
        dtf = DeviceTransform(tf, device)
        x, self.y = resident(x, device), resident(y, device)
        self.x = [dtf(x[s:s + batch_size], train=False) for s in range(0, len(x), batch_size)]
        self.batch_size, self.n = batch_size, len(y)

    @torch.no_grad()
    def __call__(self, net: nn.Module) -> torch.Tensor:
        """[loss_sum, correct] as float64 on the device."""
        net.eval()
        total = torch.zeros(2, dtype=torch.float64, device=self.y.device)
        for i, xb in enumerate(self.x):
            yb = self.y[i * self.batch_size:(i + 1) * self.batch_size]
            out = net(xb).float()
            total[0] += F.cross_entropy(out, yb, reduction="sum").double()
            total[1] += (out.argmax(1) == yb).sum()
        return total


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
                      delta: float = 0.05, delta_acc: float = 0.05) -> Levels:
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
        delta: the loss target's distance from L_o (docs/protocol.md s.4: 0.05).
        delta_acc: the accuracy target's distance from A_o (docs/protocol.md s.4: 0.05).
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
    return Levels(loss_o, loss_r, acc_o, acc_r, float(delta), float(delta_acc))


def relearn(net: nn.Module, target: RelearnTarget, attacker: str, attacker_cfg: dict[str, Any], max_steps: int,
            eval_every: int, seed: int, device: torch.device, original_state: dict[str, torch.Tensor],
            levels: Levels | None = None, stop_after_tail: int | None = None,
            progress: Callable[[int, int], None] | None = None) -> Curve:
    """Fine-tunes a deep copy of ``net`` on the relearn set; ``net`` itself is not touched. What a
    step and an evaluation are comes from ``target.task(device)`` (:class:`AttackTask`), so a
    classifier and a generator share this loop.

    Args:
        original_state: theta_o's trainable parameters (name -> tensor), for the weight distance.
        levels: L* and A*; with ``stop_after_tail`` the attack stops ``stop_after_tail`` steps after
            the first evaluated step at which both criteria have been met (each criterion's T is
            unchanged) and the curve is marked ``truncated``. None (either): the whole budget.
        progress: called with (step, max_steps) after each step.
    """
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
    task = target.task(device)
    stop_at = max_steps
    met: set[str] = set()

    def record(step: int) -> None:
        nonlocal stop_at
        flat = torch.cat([p.detach().float().reshape(-1) for p in params])
        loss, acc, dist = task.evaluate(model, (flat - theta_o).norm())
        curve.steps.append(step)
        curve.loss.append(loss)
        curve.acc.append(acc)
        curve.weight_dist.append(dist / norm_o)
        if stop_after_tail is not None and levels is not None and stop_at == max_steps:
            met.update(c for c in CRITERIA if levels.reached(curve.loss[-1], curve.acc[-1], c))
            if len(met) == len(CRITERIA):
                stop_at = min(max_steps, step + int(stop_after_tail))
        model.train()

    record(0)
    step = 0
    while step < stop_at:
        order = to_device_async(torch.randperm(task.n, generator=gen), device)
        for idx in order.split(bs):
            loss = task.step_loss(model, idx, gen)
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


def convergence_step(curve: Curve, levels: Levels, criterion: str = "loss") -> tuple[int, bool]:
    """T(theta): the first evaluated step that meets ``criterion`` (``"loss"``: forget loss <= L*;
    ``"acc"``: forget accuracy >= A*); (max_steps, True) if never (censored: a lower bound)."""
    for s, loss, acc in zip(curve.steps, curve.loss, curve.acc, strict=True):
        if levels.reached(loss, acc, criterion):
            return s, False
    return curve.max_steps, True


@dataclass(frozen=True)
class Delay:
    """T over an attack's repeats: the mean, each repeat's T, and whether any was censored."""

    mean: float
    values: tuple[int, ...]
    censored: bool


def mean_delay(curves: list[Curve], levels: Levels, criterion: str = "acc") -> Delay:
    """T averaged over the repeats of one attacker (docs/protocol.md s.4: T is the mean over
    ``attack.repeats`` attack seeds); censored if any repeat is (the mean is then a lower bound)."""
    ts = [convergence_step(c, levels, criterion) for c in curves]
    if not ts:
        raise ValueError("no curves")
    return Delay(sum(t for t, _ in ts) / len(ts), tuple(t for t, _ in ts), any(c for _, c in ts))


def recovery_gap(curve: Curve, levels: Levels) -> float:
    """Mean over evaluated steps of clip((L_t - L*) / (L_r - L*), 0, 1)."""
    denom = levels.loss_oracle - levels.target_loss
    if denom <= 0:
        return 0.0
    vals = [min(1.0, max(0.0, (v - levels.target_loss) / denom)) for v in curve.loss]
    return sum(vals) / len(vals)


REPEAT_SEED_STRIDE = 7919  # repeat r of an attack uses seed + r * this (repeat 0: the attack's own seed)


class RelearnAttack(L.Callback):
    """Attacks the unlearned network after unlearning, with each configured attacker, ``repeats``
    times (attack seeds ``seed + r * REPEAT_SEED_STRIDE``).

    Args:
        target: relearn set and D_f: a ``RelearnTarget``, or anything with ``train_y``,
            ``transform`` and ``task(device)`` (the generative track's target).
        attackers: name -> attacker settings (optimizer kwargs plus batch_size), e.g. from configs/attack/.
        max_steps: step budget, one for all attackers or name -> budget (see ``default_budget``).
        eval_every: evaluation period in steps, one or name -> period (see ``default_eval_every``).
        seed: the attack's own seed (shuffling and augmentation) of repeat 0.
        original_state: theta_o's trainable parameters, for the weight-space trajectory.
        device: where the attack runs; default: the module's device.
        levels: L* and A*, needed only by ``stop_after_tail``.
        stop_after_tail: ``attack.stop_after_tail``: stop an attacker this many steps after both
            criteria were first met (each T unchanged, the curve marked truncated); None = the
            whole budget (the default: full curves).
        repeats: ``attack.repeats``: attack seeds per attacker; T is their mean.

    After ``run`` (or ``on_fit_end``), ``curves[name]`` is the list of that attacker's curves,
    one per repeat.
    """

    def __init__(self, target: Any, attackers: dict[str, dict[str, Any]], max_steps: int | dict[str, int],
                 eval_every: int | dict[str, int], seed: int, original_state: dict[str, torch.Tensor],
                 device: torch.device | None = None, levels: Levels | None = None,
                 stop_after_tail: int | None = None, repeats: int = 1) -> None:
        super().__init__()
        if stop_after_tail is not None and (int(stop_after_tail) < 0 or levels is None):
            raise ValueError(f"stop_after_tail={stop_after_tail} needs a number of steps >= 0 and the levels")
        if int(repeats) < 1:
            raise ValueError(f"repeats={repeats} must be >= 1")
        self.target, self.attackers = target, attackers
        self.max_steps = {a: int(max_steps[a] if isinstance(max_steps, dict) else max_steps) for a in attackers}
        self.eval_every = {a: int(eval_every[a] if isinstance(eval_every, dict) else eval_every) for a in attackers}
        self.seed, self.repeats = int(seed), int(repeats)
        self.original_state, self.device = original_state, device
        self.levels, self.stop_after_tail = levels, stop_after_tail
        self.curves: dict[str, list[Curve]] = {}

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            self.run(pl_module.net, self.device or pl_module.device)

    def run(self, net: nn.Module, device: torch.device | None = None,
            progress: Callable[[int, int], None] | None = None) -> dict[str, list[Curve]]:
        """Attacks a copy of ``net`` with each attacker and repeat; ``progress(step, steps)``
        defaults to a terminal line with an ETA (silent when stdout is not a terminal)."""
        from benchmark.training import ProgressLine

        device = device or torch.device("cpu")
        self.curves = {}
        for name, cfg in self.attackers.items():
            self.curves[name] = []
            for r in range(self._distinct_repeats(cfg)):
                line = ProgressLine(f"attack {name}" + (f" {r + 1}/{self.repeats}" if self.repeats > 1 else ""))
                self.curves[name].append(relearn(
                    net, self.target, name, dict(cfg), self.max_steps[name], self.eval_every[name],
                    self.seed + r * REPEAT_SEED_STRIDE, device, self.original_state, self.levels,
                    self.stop_after_tail, progress or line.update))
                line.close()
            while len(self.curves[name]) < self.repeats:  # identical by construction (_distinct_repeats)
                twin = copy.deepcopy(self.curves[name][0])
                twin.seconds = 0.0  # not run: the attack's time is counted once
                self.curves[name].append(twin)
        return self.curves

    def _distinct_repeats(self, cfg: dict[str, Any]) -> int:
        """How many repeats can differ: where the relearn set is one batch and nothing is augmented,
        every seed takes the same steps (a batch's order only changes float summation), so one
        run stands for all ``repeats``. A target whose steps draw noise (a generator's) says
        ``seeded_steps = True``: every repeat runs."""
        if getattr(self.target, "seeded_steps", False):
            return self.repeats
        one_batch = len(self.target.train_y) <= int(cfg.get("batch_size", 128))
        return 1 if one_batch and not self.target.transform.augments else self.repeats
