"""Know the cost before the work: a few measured steps -> the plan's wall time per stage.

``print_estimate`` times a handful of training steps and no-grad forward passes of the
run's model on the run's device (synthetic images of the dataset's shape, random state
forked so that no result changes), counts the images each stage pushes through the
network, and prints one line per stage. On a CPU with an estimate over an hour it adds
one line naming the faster settings. Counts are upper bounds where the plan cannot know
more: reference models are counted as not cached, a method as passing over D_r each
epoch (``epochs`` x |D_r|), which is what most methods do, and the attack budget as the
fixed one (``attack.epochs``; with ``attack.budget=oracle`` it is 5 x the oracle's T, known
only once the oracle has relearned), times ``attack.repeats``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from benchmark.training import _fmt_s

CPU_HINT_S = 3600.0  # beyond this on a CPU, name the faster settings


@dataclass(frozen=True)
class StepCost:
    """Measured seconds per image: training (forward, backward, SGD step) and no-grad forward."""

    train_s: float
    eval_s: float


def measure(model: str, num_classes: int, shape: tuple[int, ...], device: torch.device, batch: int = 64,
            steps: int = 5) -> StepCost:
    """The median of ``steps`` training steps (after one warm-up) and of as many forward
    passes at ``batch``, per image; the global random state is restored afterwards (results stay bit-identical)."""
    from benchmark.models import build_model

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = build_model(model, num_classes, shape[0]).to(device)
        x = torch.randn(batch, *shape, device=device)
        y = torch.randint(0, num_classes, (batch,), device=device)
        opt = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9)

        def train_step() -> None:
            loss = F.cross_entropy(net(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        def sync() -> None:
            if device.type == "cuda":
                torch.cuda.synchronize(device)

        def timed(fn: Any) -> float:  # the median of single steps: robust to a busy machine
            fn()
            sync()
            times = []
            for _ in range(steps):
                t0 = time.perf_counter()
                fn()
                sync()
                times.append(time.perf_counter() - t0)
            return sorted(times)[len(times) // 2] / batch

        net.train()
        train = timed(train_step)
        net.eval()
        with torch.no_grad():
            evaluation = timed(lambda: net(x))
    return StepCost(train, evaluation)


def stage_images(cfg: Any, plan: Any, n_train: int, n_test: int) -> dict[str, tuple[float, float]]:
    """(training images, evaluation images) per stage of the plan's remaining work."""
    from benchmark.config import attacker_config

    groups = plan.groups()
    recipe = cfg.data.recipe
    ref_train = ref_eval = unlearn = evaluation = att_train = att_eval = 0.0
    a = cfg.attack
    attackers = [str(n) for n in a.attackers] if a.enabled else []
    repeats = int(a.get("repeats", 1) or 1)
    k = int(((cfg.get("eval") or {}).get("population") or {}).get("k") or 0)
    for ratio, _seed in groups:
        r = float(ratio) if ratio is not None else 0.1
        n_f = max(1, round(r * n_train))
        ref_train += int(recipe.epochs) * (n_train + (n_train - n_f))  # theta_o on D, theta_r on D_r
        ref_eval += 2 * (n_train + n_test)
        cells = [c for c in plan.todo if (c.ratio, c.seed) == (ratio, _seed)]
        # the two references, the oracle's budget calibration, then every method cell
        attacked = 3 + sum(1 for c in cells if c.method not in ("original", "retrain"))
        for name in attackers:
            bs = int(attacker_config(name, cfg).get("batch_size", 128))
            # attack.budget=oracle is only known once the oracle relearned: its fixed stand-in is counted
            steps = int(a.max_steps) if a.max_steps else int(a.epochs) * math.ceil(n_f / bs)
            every = int(a.eval_every) if a.eval_every else max(1, steps // 100)
            att_train += repeats * attacked * steps * min(bs, n_f)
            att_eval += repeats * attacked * (steps // every + 1) * n_f
        # eval.population: K originals and 2K oracles (beyond the group's own two), K runs of each method
        ref_train += int(recipe.epochs) * ((k - 1) * n_train + (2 * k - 1) * (n_train - n_f)) if k else 0
        for c in cells:
            if c.method in ("original", "retrain"):
                continue
            unlearn += (1 + k) * int(c.hparams.get("epochs", 1) or 1) * (n_train - n_f)
            evaluation += n_train + n_test
    return {"references": (ref_train, ref_eval), "unlearning": (unlearn, 0.0), "attacks": (att_train, att_eval),
            "evaluation": (0.0, evaluation)}


def estimate(cfg: Any, plan: Any, ds: Any, device: torch.device) -> tuple[dict[str, float], StepCost]:
    """Estimated wall seconds per stage, and the measured costs."""
    n_train = int(cfg.data.train_subset or len(ds.train_y) * (1 - float(cfg.data.get("val_fraction", 0.1))))
    n_train = min(n_train, len(ds.train_y))
    cost = measure(str(cfg.model), int(ds.num_classes), tuple(ds.train_x.shape[1:]), device)
    images = stage_images(cfg, plan, n_train, len(ds.test_y))
    return {k: tr * cost.train_s + ev * cost.eval_s for k, (tr, ev) in images.items()}, cost


def print_estimate(cfg: Any, plan: Any, ds: Any, device: torch.device) -> dict[str, float] | None:
    """Prints the plan's estimated wall time per stage (nothing when nothing is left to run)."""
    if not plan.todo:
        return None
    stages, cost = estimate(cfg, plan, ds, device)
    total = sum(stages.values())
    parts = ", ".join(f"{k} ~{_fmt_s(v)}" for k, v in stages.items() if v > 0)
    print(f"[estimate] {cfg.model} on {device.type}: {1e3 * cost.train_s:.2f} ms per training image, "
          f"{1e3 * cost.eval_s:.2f} ms per evaluated image (measured); {parts}; total ~{_fmt_s(total)} "
          "(references counted as not cached)", flush=True)
    if device.type == "cpu" and total > CPU_HINT_S:
        print(f"[estimate] over an hour on the CPU (~{_fmt_s(total)}): the CPU regime is PRESET=cifar10_cpu "
              "(preset=cifar10_cpu); on a GPU machine pass trainer.accelerator=gpu", flush=True)
    return stages
