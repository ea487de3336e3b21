"""Speed of the suite's loops against plain PyTorch twins, in one run.

Three loops, each beside a plain PyTorch loop doing the same work (same network, data,
batch size, optimiser, number of steps):

- unlearning: ``UnlearnModule`` under Lightning (a retain cross-entropy method) vs a plain
  training loop, and a minimal ``LightningModule`` doing the same step under the same trainer
  ("bare Lightning": Lightning's own per-step cost, the floor under the suite's ratio);
- attack: ``relearn`` (the relearning attack: steps plus an evaluation of D_f every
  ``--eval-every`` steps) vs a plain loop with the same evaluations;
- evaluation: the attack's D_f evaluation vs a plain no-grad loop.

With ``--old REV`` (default ``HEAD``, if git has it) the unlearning and attack loops of that
revision (``benchmark/module.py``, ``benchmark/callbacks/relearn.py``) run too, interleaved,
so that before/after ratios come from the same run on the same (possibly busy) machine.
Timings interleave the variants ``--repeats`` times and keep each one's median.
Usage:

    python scripts/bench_speed.py [--model digits_mlp|cnn32|resnet18] [--steps 200] [--batch 128]
        [--device cuda] [--precision bf16-mixed] [--old HEAD|none] [--repeats 3]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import subprocess
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmark.callbacks import relearn as relearn_mod  # noqa: E402
from benchmark.data.transforms import BatchTransform  # noqa: E402
from benchmark.models import build_model, trainable_state  # noqa: E402
from benchmark.training import build_trainer  # noqa: E402


def load_old(rev: str) -> dict[str, types.ModuleType]:
    """``benchmark/module.py`` and ``benchmark/callbacks/relearn.py`` of git revision ``rev``."""
    out = {}
    for name, path in (("module", "benchmark/module.py"), ("relearn", "benchmark/callbacks/relearn.py")):
        src = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:{path}"], capture_output=True, text=True,
                             check=True).stdout
        mod = types.ModuleType(f"old_{name}")
        sys.modules[mod.__name__] = mod
        exec(compile(src, f"{rev}:{path}", "exec"), mod.__dict__)  # noqa: S102 - our own file at a revision
        out[name] = mod
    return out


def data_for(model: str, n: int) -> tuple[torch.Tensor, torch.Tensor, BatchTransform]:
    g = torch.Generator().manual_seed(0)
    shape = (n, 1, 8, 8) if model.startswith("digits") else (n, 3, 32, 32)
    x = torch.randint(0, 256, shape, generator=g, dtype=torch.uint8)
    y = torch.randint(0, 10, (n,), generator=g)
    c = shape[1]
    return x, y, BatchTransform((0.5,) * c, (0.25,) * c)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def autocast(device: torch.device, precision: str):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision.startswith("bf16"))


# ---- unlearning ------------------------------------------------------------------------------
def plain_unlearn(net, x, y, tf, steps, bs, device, precision) -> float:
    net = net.to(device).train()
    x, y = x.to(device), y.to(device)  # the plain twin also keeps the data on the device
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    g = torch.Generator().manual_seed(0)
    done = 0
    sync(device)
    t0 = time.perf_counter()
    while done < steps:
        for idx in torch.randperm(len(y), generator=g).to(device).split(bs):
            with autocast(device, precision):
                loss = F.cross_entropy(net(tf(x[idx], train=True)), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            done += 1
            if done >= steps:
                break
    sync(device)
    return time.perf_counter() - t0


def retain_ce(base: type) -> type:
    class RetainCE(base):  # finetune's objective, on either revision's base class
        def unlearn_step(self, batch):
            b = batch["retain"]
            return {"loss": F.cross_entropy(self.net(b.x), b.y)}

    return RetainCE


def lightning_unlearn(mod, net, x, y, tf, steps, bs, device, precision) -> tuple[float, int]:
    n = len(y)
    idx = torch.arange(n)
    data = mod.UnlearnData(images=x, labels=y, forget=idx[:1], retain=idx, transform=tf, num_classes=10)
    epochs = max(1, round(steps * bs / n))
    module = retain_ce(mod.UnlearnModule)(net, data, epochs=epochs, batch_size=bs, scheduler="constant")
    acc = "gpu" if device.type == "cuda" else "cpu"
    trainer = build_trainer({"accelerator": acc, "devices": 1, "precision": precision, "log_every_n_steps": 25},
                            epochs)
    t0 = time.perf_counter()
    trainer.fit(module)
    return time.perf_counter() - t0, epochs * -(-n // bs)


def bare_lightning_unlearn(net, x, y, tf, steps, bs, device, precision) -> tuple[float, int]:
    """The same step in a minimal ``LightningModule`` under the suite's trainer: Lightning's own
    per-step cost, the floor under the suite's ratio (index batches, no callbacks of ours)."""
    import lightning as L

    n = len(y)
    epochs = max(1, round(steps * bs / n))

    class Batches:
        def __init__(self) -> None:
            self.g = torch.Generator().manual_seed(0)

        def __len__(self) -> int:
            return -(-n // bs)

        def __iter__(self):
            return iter(torch.randperm(n, generator=self.g).split(bs))

    class Bare(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def on_fit_start(self) -> None:
            self.x, self.y = x.to(self.device), y.to(self.device)

        def train_dataloader(self):
            return Batches()

        def training_step(self, idx, batch_idx):
            idx = idx.to(self.device, non_blocking=True)
            return F.cross_entropy(self.net(tf(self.x[idx], train=True)), self.y[idx])

        def configure_optimizers(self):
            return torch.optim.SGD(self.net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)

    acc = "gpu" if device.type == "cuda" else "cpu"
    trainer = build_trainer({"accelerator": acc, "devices": 1, "precision": precision, "log_every_n_steps": 25},
                            epochs)
    t0 = time.perf_counter()
    trainer.fit(Bare())
    return time.perf_counter() - t0, epochs * -(-n // bs)


# ---- attack and evaluation -------------------------------------------------------------------
def plain_eval(net, x, y, tf, device, bs=1024) -> tuple[float, float]:
    net.eval()
    loss = torch.zeros((), device=device, dtype=torch.float64)
    correct = torch.zeros((), device=device, dtype=torch.float64)
    with torch.no_grad():
        for s in range(0, len(y), bs):
            out = net(tf(x[s:s + bs], train=False)).float()
            loss += F.cross_entropy(out, y[s:s + bs], reduction="sum").double()
            correct += (out.argmax(1) == y[s:s + bs]).sum()
    return float(loss) / len(y), 100.0 * float(correct) / len(y)


def plain_attack(net, x, y, tf, steps, bs, every, device) -> float:
    model = copy.deepcopy(net).to(device)
    x, y = x.to(device), y.to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    g = torch.Generator().manual_seed(0)
    sync(device)
    t0 = time.perf_counter()
    plain_eval(model, x, y, tf, device)
    done = 0
    while done < steps:
        for idx in torch.randperm(len(y), generator=g).to(device).split(bs):
            model.train()
            loss = F.cross_entropy(model(tf(x[idx], train=True)), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            done += 1
            if done % every == 0:
                plain_eval(model, x, y, tf, device)
            if done >= steps:
                break
    sync(device)
    return time.perf_counter() - t0


def suite_attack(rel, net, x, y, tf, steps, bs, every, device) -> float:
    target = rel.RelearnTarget(x, y, x, y, tf)
    t0 = time.perf_counter()
    rel.relearn(net, target, "sgd", {"lr": 0.01, "momentum": 0.9, "batch_size": bs}, steps, every, 0, device,
                trainable_state(net))
    sync(device)
    return time.perf_counter() - t0


def median_of(fn: Callable[[], float], repeats: int) -> float:
    return statistics.median(fn() for _ in range(repeats))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="cnn32")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default="32-true")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--eval-every", type=int, default=10)
    ap.add_argument("--eval-n", type=int, default=2048, help="images of the evaluation loop")
    ap.add_argument("--old", default="HEAD", help="git revision of the old path, or 'none'")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--only", default="unlearn,attack,eval")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    old = None
    if a.old != "none":
        try:
            old = load_old(a.old)
        except (subprocess.CalledProcessError, FileNotFoundError) as e:
            print(f"(no old path: {e})")
    n = a.batch * 10
    x, y, tf = data_for(a.model, n)
    torch.manual_seed(0)
    net0 = build_model(a.model, 10, x.shape[1])
    only = set(a.only.split(","))
    rows: list[tuple[str, str, float, float]] = []  # loop, variant, seconds, steps

    def fresh():
        return copy.deepcopy(net0)

    if "unlearn" in only:
        plain_unlearn(fresh(), x, y, tf, 5, a.batch, device, a.precision)  # warm-up
        variants = {"plain PyTorch": lambda: (plain_unlearn(fresh(), x, y, tf, a.steps, a.batch, device,
                                                            a.precision), a.steps),
                    "bare Lightning": lambda: bare_lightning_unlearn(fresh(), x, y, tf, a.steps, a.batch, device,
                                                                     a.precision),
                    "suite (new)": lambda: lightning_unlearn(sys.modules["benchmark.module"], fresh(), x, y, tf,
                                                             a.steps, a.batch, device, a.precision)}
        if old:
            variants["suite (old)"] = lambda: lightning_unlearn(old["module"], fresh(), x, y, tf, a.steps, a.batch,
                                                                device, a.precision)
        res = {k: [] for k in variants}
        for _ in range(a.repeats):
            for k, fn in variants.items():
                res[k].append(fn())
        for k, v in res.items():
            rows.append(("unlearn", k, statistics.median(t for t, _ in v), v[0][1]))
    if "attack" in only:
        fx, fy = x[: max(a.batch * 2, 256)], y[: max(a.batch * 2, 256)]
        variants = {"plain PyTorch": lambda: plain_attack(net0, fx, fy, tf, a.steps, a.batch, a.eval_every, device),
                    "suite (new)": lambda: suite_attack(relearn_mod, net0, fx, fy, tf, a.steps, a.batch,
                                                        a.eval_every, device)}
        if old:
            variants["suite (old)"] = lambda: suite_attack(old["relearn"], net0, fx, fy, tf, a.steps, a.batch,
                                                           a.eval_every, device)
        res = {k: [] for k in variants}
        for _ in range(a.repeats):
            for k, fn in variants.items():
                res[k].append(fn())
        rows += [("attack", k, statistics.median(v), a.steps) for k, v in res.items()]
    if "eval" in only:
        ex, ey = x[: a.eval_n].to(device), y[: a.eval_n].to(device)
        net = fresh().to(device)
        feval = relearn_mod._ForgetEval(ex, ey, tf, device)  # noqa: SLF001

        def timed(fn: Callable[[], object]) -> float:
            sync(device)
            t0 = time.perf_counter()
            for _ in range(5):
                fn()
            sync(device)
            return (time.perf_counter() - t0) / 5

        variants = {"plain PyTorch": lambda: timed(lambda: plain_eval(net, ex, ey, tf, device)),
                    "suite (new)": lambda: timed(lambda: feval(net).tolist())}
        if old:
            variants["suite (old)"] = lambda: timed(lambda: old["relearn"]._evaluate(net, ex, ey, tf, device))  # noqa: SLF001
        res = {k: [] for k in variants}
        for _ in range(a.repeats):
            for k, fn in variants.items():
                res[k].append(fn())
        rows += [("eval", k, statistics.median(v), 1) for k, v in res.items()]

    print(f"\n{a.model}, batch {a.batch}, {device}, {a.precision}, {torch.get_num_threads()} threads, "
          f"median of {a.repeats} interleaved repeats")
    print(f"{'loop':<8} {'variant':<14} {'steps':>6} {'ms/step':>9} {'vs plain':>9}")
    plain = {loop: t / s for loop, k, t, s in rows if k == "plain PyTorch"}
    for loop, k, t, s in rows:
        print(f"{loop:<8} {k:<14} {s:>6} {1e3 * t / s:>9.2f} {t / s / plain[loop]:>8.2f}x")


if __name__ == "__main__":
    main()
