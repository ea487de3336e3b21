"""The relearning attack on a run's cached reference models, old code against new, in one run.

Loads theta_o and theta_r of one (config, ratio, seed) from the cache (it trains them, like
``run``, when they are missing), then attacks each with both attackers at a fixed budget,
evaluating all of D_f every ``--eval-every`` steps, three ways:

- ``old``: ``benchmark/callbacks/relearn.py`` of git revision ``--old`` (default: the revision
  before the fast path, 6361398: host-side batches, D_f evaluated batch by batch);
- ``new``: today's ``relearn``, full curve;
- ``new+tail``: today's ``relearn`` stopped ``--tail`` steps after both criteria were met.

It prints seconds and T (loss criterion, the one every revision has) per model and attacker,
so equal T values show that only the cost changed. Usage:

    python scripts/bench_attack.py preset=cifar10_cpu 'forget.ratios=[0.3]' 'seeds=[3]' \
        [--steps 110] [--eval-every 1] [--tail 20] [--old 6361398] [--threads 2]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import types
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmark.callbacks import relearn as new  # noqa: E402
from benchmark.config import compose  # noqa: E402
from benchmark.data.sources import load_dataset  # noqa: E402
from benchmark.data.transforms import make_transform  # noqa: E402
from benchmark.models import trainable_state  # noqa: E402
from benchmark.reference import get_reference  # noqa: E402
from benchmark.stages.references import group_split  # noqa: E402


def old_relearn(rev: str) -> types.ModuleType:
    src = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:benchmark/callbacks/relearn.py"],
                         capture_output=True, text=True, check=True).stdout
    mod = types.ModuleType("old_relearn")
    sys.modules[mod.__name__] = mod
    exec(compile(src, f"{rev}:benchmark/callbacks/relearn.py", "exec"), mod.__dict__)  # noqa: S102 - our file
    return mod


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("overrides", nargs="*")
    ap.add_argument("--steps", type=int, default=110)
    ap.add_argument("--eval-every", type=int, default=1)
    ap.add_argument("--tail", type=int, default=20)
    ap.add_argument("--old", default="6361398")
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    cfg = compose(a.overrides)
    ratio, seed = float(cfg.forget.ratios[0]), int(cfg.seeds[0])
    ds = load_dataset(str(cfg.data.name), cfg.data.root, False, cache_dir=str(cfg.cache_dir))
    split = group_split(cfg, ds, ratio, seed)
    tf = make_transform(cfg, ds)
    refs = {k: get_reference(k, cfg, ds, split, tf, seed) for k in ("original", "oracle")}
    f = torch.as_tensor(split.forget)
    fx, fy = ds.train_x[f], ds.train_y[f]
    dev = torch.device("cpu")
    levels = new.relearning_levels(refs["original"].net, refs["oracle"].net, fx, fy, tf, dev)
    theta_o = trainable_state(refs["original"].net)
    old = old_relearn(a.old)
    attackers = {"sgd": {"lr": 0.01, "momentum": 0.9, "batch_size": 128}, "adam": {"lr": 1e-3, "batch_size": 128}}
    print(f"{cfg.data.name} {cfg.model} ratio {ratio} seed {seed}: |D_f| = {len(fy)}, budget {a.steps} steps, "
          f"D_f evaluated every {a.eval_every} step(s), {torch.get_num_threads()} threads; "
          f"L* {levels.target_loss:.4f}, A* {levels.target_acc:.2f}")
    print(f"{'model':9} {'attacker':8} {'variant':9} {'seconds':>8} {'steps':>6} {'T (loss)':>9} {'T (acc)':>8}")
    totals: dict[str, float] = {}
    for kind, ref in refs.items():
        for name, acfg in attackers.items():
            args = (ref.net, None, name, acfg, a.steps, a.eval_every, seed, dev, theta_o)
            runs = {
                "old": lambda args=args: old.relearn(*args[:1], old.RelearnTarget(fx, fy, fx, fy, tf), *args[2:]),
                "new": lambda args=args: new.relearn(*args[:1], new.RelearnTarget(fx, fy, fx, fy, tf), *args[2:]),
                "new+tail": lambda args=args: new.relearn(*args[:1], new.RelearnTarget(fx, fy, fx, fy, tf), *args[2:],
                                                levels=levels, stop_after_tail=a.tail),
            }
            for variant, fn in runs.items():
                t0 = time.perf_counter()
                curve = fn()
                sec = time.perf_counter() - t0
                totals[variant] = totals.get(variant, 0.0) + sec
                t_loss = new.convergence_step(new.Curve.from_dict(curve.to_dict()), levels, "loss")
                t_acc = new.convergence_step(new.Curve.from_dict(curve.to_dict()), levels, "acc")
                fmt = lambda t: f"{t[0]}{'+' if t[1] else ''}"  # noqa: E731
                print(f"{kind:9} {name:8} {variant:9} {sec:8.1f} {curve.steps[-1]:6d} {fmt(t_loss):>9} "
                      f"{fmt(t_acc):>8}", flush=True)
    print("total seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in totals.items())
          + f"; new+tail / old = {totals['new+tail'] / totals['old']:.2f}")


if __name__ == "__main__":
    main()
