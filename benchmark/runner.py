"""Grid -> cells: methods x ratios x seeds for one dataset, references first, resume.

A *group* is (dataset, scenario, ratio, seed): its split, its original model and
its oracle are shared by every method. A *cell* is a group plus a method; its id
is a hash of its resolved configuration, and a cell whose id already has an
``ok`` record in ``results.jsonl`` is skipped.
"""

from __future__ import annotations

import copy
import hashlib
import importlib
import json
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

from benchmark.callbacks.relearn import (
    Curve,
    Levels,
    RelearnAttack,
    RelearnTarget,
    convergence_step,
    default_budget,
    default_eval_every,
    rcd_metrics,
)
from benchmark.config import attacker_config, method_config, to_dict
from benchmark.data.datasets import ImageData, load_dataset
from benchmark.data.splits import Split, check_ratio, make_split
from benchmark.data.transforms import BatchTransform
from benchmark.errors import BenchmarkError
from benchmark.evaluate import cached_outputs, full_outputs, split_view
from benchmark.loggers import make_logger
from benchmark.metrics import (
    MetricContext,
    compute_metrics,
    gap_metrics,
    metric_directions,
    save_outputs,
    split_values,
    time_metrics,
    weight_distance,
)
from benchmark.models import MODELS, trainable_state
from benchmark.module import METHODS, UnlearnData
from benchmark.reference import Reference, get_reference
from benchmark.report import print_table, write_summary
from benchmark.results import (
    append_result,
    atomic_write_text,
    check_writable,
    curves_path,
    git_revision,
    package_versions,
    read_results,
)
from benchmark.training import eval_device, fit, world_size
from benchmark.version import PROTOCOL_VERSION

MEMORISATION_MIN_GAP = 5.0  # points of forget accuracy theta_o must hold over theta_r


def import_user_modules(names: list[str]) -> None:
    """Imports ``imports=[...]`` so user methods register themselves, then the baselines."""
    for name in names or []:
        try:
            importlib.import_module(str(name))
        except ImportError as e:
            raise BenchmarkError(f"cannot import {name!r} from imports=[...] ({e}); "
                                 "put its folder on PYTHONPATH or install it") from None
    importlib.import_module("baselines")


def resolve_methods(spec: Any) -> list[str]:
    names = METHODS.names() if spec in ("all", None) else [str(m) for m in spec]
    if not names:
        raise BenchmarkError("methods is empty; name at least one, e.g. methods=[finetune]")
    for n in names:
        METHODS.get(n)  # did-you-mean on a typo
    # the reference rows first, then the rest in the order given
    return [m for m in ("original", "retrain") if m in names] + [m for m in names if m not in ("original", "retrain")]


def _cell_id(cell: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(cell, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class Group:
    """What the methods of one (scenario, ratio, seed) share."""

    split: Split
    original: Reference
    oracle: Reference
    original_outputs: dict
    oracle_outputs: dict
    oracle_metrics: dict
    warnings: list[str]
    rmia_refs: list[dict] | None = None  # other seeds' oracle views (same D_f), for RMIA
    attack: AttackPlan | None = None
    ref_curves: dict[str, dict[str, Curve]] = field(default_factory=dict)  # original/oracle -> attacker -> curve


@dataclass
class AttackPlan:
    """One group's relearning attack: data, levels, budget, attackers."""

    target: RelearnTarget
    levels: Levels
    attackers: dict[str, dict[str, Any]]
    max_steps: int
    eval_every: int
    seed: int
    original_state: dict[str, torch.Tensor]
    key: str  # hash of everything that determines an attack's curve besides the model

    def callback(self) -> RelearnAttack:
        return RelearnAttack(self.target, self.attackers, self.max_steps, self.eval_every, self.seed,
                             self.original_state)

    def cached_run(self, path: Path, net: torch.nn.Module, device: torch.device) -> dict[str, Curve]:
        """Attacks a reference model once; its curves are cached next to the model."""
        if path.exists():
            try:
                return {k: Curve.from_dict(v) for k, v in json.loads(path.read_text()).items()}
            except (json.JSONDecodeError, TypeError, AttributeError):
                print(f"warning: cached attack curves {path} are corrupt; recomputing them")
        curves = self.callback().run(net, device)
        atomic_write_text(path, json.dumps({k: c.to_dict() for k, c in curves.items()}))
        return curves


def parse_shard(spec: Any) -> tuple[int, int] | None:
    """``"i/n"`` -> (i, n) with 0 <= i < n; None for no sharding."""
    if spec in (None, "", "None"):
        return None
    try:
        i, n = (int(x) for x in str(spec).split("/"))
    except ValueError:
        raise BenchmarkError(f"shard={spec!r} is not of the form i/n, e.g. shard=0/4") from None
    if n < 1 or not 0 <= i < n:
        raise BenchmarkError(f"shard={spec} is out of range: i must be in 0..n-1, e.g. shard=0/{max(n, 1)}")
    return i, n


def in_shard(shard: tuple[int, int] | None, *group: Any) -> bool:
    """Whether a group (dataset, scenario, ratio, seed) belongs to this shard: a hash of the
    group, so every shard gets whole groups (references are never trained twice) and the
    shards of one grid partition it whatever the order."""
    if shard is None:
        return True
    h = int(hashlib.sha256(json.dumps([str(g) for g in group]).encode()).hexdigest()[:12], 16)
    return h % shard[1] == shard[0]


class Runner:
    """Runs one dataset's grid from a composed config (see ``benchmark.config.compose``)."""

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg
        self.shard = parse_shard(cfg.get("shard"))
        if cfg.trainer.get("cpu_threads"):
            torch.set_num_threads(int(cfg.trainer.cpu_threads))
        import_user_modules(list(cfg.imports or []))
        self.methods = resolve_methods(cfg.methods)
        if cfg.methods in ("all", None):  # `all` means all that support this scenario
            unfit = [m for m in self.methods if METHODS.get(m).scenarios not in (None, ())
                     and str(cfg.forget.scenario) not in METHODS.get(m).scenarios]
            if unfit:
                print(f"[bench] not for forget.scenario={cfg.forget.scenario}: {', '.join(unfit)}", flush=True)
            self.methods = [m for m in self.methods if m not in unfit]
        MODELS.get(str(cfg.model))
        scenario = str(cfg.forget.scenario)
        if scenario in ("random", "subclass") or (scenario == "class" and not cfg.forget.classes):
            self.ratios = [check_ratio(r) for r in cfg.forget.ratios]
        else:
            self.ratios = [None]
        if not self.ratios:
            raise BenchmarkError("forget.ratios is empty; give at least one, e.g. forget.ratios=[0.1]")
        self.seeds = [int(s) for s in cfg.seeds]
        if not self.seeds:
            raise BenchmarkError("seeds is empty; give at least one, e.g. seeds=[0]")
        self.method_kwargs = {m: method_config(m, cfg) for m in self.methods}
        self.out = check_writable(cfg.output_dir)
        self.device = eval_device(cfg.trainer)
        self.ds: ImageData | None = None
        self.load_data()  # a missing dataset fails here, before any work

    # ------------------------------------------------------------------ cells
    def cell(self, method: str, ratio: float | None, seed: int) -> dict[str, Any]:
        c = self.cfg
        kwargs = self.method_kwargs[method]
        if METHODS.get(method).uses_recipe:
            kwargs = {**kwargs, "recipe": to_dict(c.data.recipe)}
        return {"dataset": to_dict(c.data), "model": str(c.model), "method": method, "method_args": kwargs,
                "scenario": str(c.forget.scenario), "ratio": ratio, "seed": seed,
                "classes": to_dict(c.forget)["classes"], "indices_file": c.forget.indices_file,
                "forget_seed": c.forget.seed,
                "protocol_version": PROTOCOL_VERSION}

    def run(self) -> list[dict[str, Any]]:
        cfg = self.cfg
        # finished cells are skipped; failed and skipped ones too, unless retry_failed=true
        keep = ("ok",) if cfg.get("retry_failed") else ("ok", "failed", "skipped")
        done = {r["cell_id"] for r in read_results(self.out) if r.get("status") in keep}
        cells = [(r, s, m) for r in self.ratios for s in self.seeds for m in self.methods
                 if in_shard(self.shard, cfg.dataset, cfg.forget.scenario, r, s)]
        ids = {(r, s, m): _cell_id(self.cell(m, r, s)) for r, s, m in cells}
        todo = [k for k in cells if ids[k] not in done]
        shard = f" shard {self.shard[0]}/{self.shard[1]}," if self.shard else ""
        print(f"[bench] {cfg.dataset}/{cfg.forget.scenario}:{shard} {len(cells)} cells "
              f"({len(cells) - len(todo)} done already), methods: {', '.join(self.methods)}", flush=True)
        logger = make_logger(cfg)
        t_start, n_done = time.perf_counter(), 0
        for ratio in self.ratios:
            seeds = [s for s in self.seeds if any(k[:2] == (ratio, s) for k in todo)]
            if not seeds:
                continue
            # every seed's references first when the other seeds' oracles can serve as RMIA references
            needed = self.seeds if self.forget_fixed_across_seeds() and len(self.seeds) > 1 else seeds
            groups = {seed: self.prepare_group(ratio, seed) for seed in needed}
            self.attach_rmia_references(groups)
            for seed in seeds:
                pending = [m for m in self.methods if (ratio, seed, m) in todo]
                group = groups[seed]
                for method in pending:
                    print(f"[run] {method} ratio={ratio} seed={seed} (cell {n_done + 1}/{len(todo)})", flush=True)
                    record = self.run_cell(group, method, ratio, seed, ids[(ratio, seed, method)])
                    append_result(self.out, record)
                    logger.log_cell(record)
                    n_done += 1
                    eta = (time.perf_counter() - t_start) / n_done * (len(todo) - n_done)
                    print(_progress_line(record, n_done, len(todo), eta), flush=True)
                if pending and cfg.attack.enabled:
                    self.group_figure(ratio, seed, {ids[(ratio, seed, m)] for m in self.methods})
        logger.finish(self.out)
        records = [r for r in read_results(self.out) if r.get("cell_id") in set(ids.values())]
        print_table(records, self.methods)
        write_summary(self.out, read_results(self.out))
        return records

    # ------------------------------------------------------------------ groups
    def load_data(self) -> ImageData:
        if self.ds is None:
            d = self.cfg.data
            t0 = time.perf_counter()
            self.ds = load_dataset(str(d.name), d.root, bool(d.download), cache_dir=str(Path(self.cfg.cache_dir)))
            print(f"[data] {d.name}: {len(self.ds.train_y)} train / {len(self.ds.test_y)} test images, "
                  f"{self.ds.num_classes} classes ({time.perf_counter() - t0:.1f} s)", flush=True)
        return self.ds

    def transform(self) -> BatchTransform:
        ds, aug = self.load_data(), self.cfg.data.augment
        return BatchTransform(tuple(ds.mean), tuple(ds.std), int(aug.crop_pad), bool(aug.flip))

    def prepare_group(self, ratio: float | None, seed: int) -> Group:
        cfg, ds = self.cfg, self.load_data()
        f = cfg.forget
        forget_seed = seed if f.seed is None else int(f.seed)
        split = make_split(ds.train_y.numpy(), str(f.scenario), ratio, forget_seed,
                           train_subset=cfg.data.train_subset, split_seed=int(cfg.data.split_seed),
                           classes=list(f.classes) if f.classes else None, indices_file=f.indices_file)
        split.save(Path(cfg.cache_dir) / "splits")
        tf = self.transform()
        refs = {}
        for kind in ("original", "oracle"):
            t0 = time.perf_counter()
            refs[kind] = get_reference(kind, cfg, ds, split, tf, seed)
            how = "reused from cache" if refs[kind].cached else "trained"
            print(f"[ref] {kind} {how} ({refs[kind].key}, {time.perf_counter() - t0:.1f} s)", flush=True)
        outdir = Path(cfg.cache_dir) / "outputs"
        bs = int(cfg.eval.batch_size)
        o_full = cached_outputs(outdir / f"{refs['original'].key}.npz", refs["original"].net, ds, split, tf,
                                self.device, bs)
        r_full = cached_outputs(outdir / f"{refs['oracle'].key}.npz", refs["oracle"].net, ds, split, tf,
                                self.device, bs)
        r_metrics, _ = compute_metrics(self.context(split_view(r_full, split), split, seed))
        o_metrics, _ = compute_metrics(self.context(split_view(o_full, split), split, seed), ["eval/forget/acc"])
        o_acc, r_acc = float(o_metrics["eval/forget/acc"]), float(r_metrics["eval/forget/acc"])
        warnings = []
        if o_acc - r_acc < MEMORISATION_MIN_GAP:
            warnings.append(f"the original has not memorised the forget set: forget accuracy {o_acc:.1f} vs "
                            f"the oracle's {r_acc:.1f} (< {MEMORISATION_MIN_GAP:.0f} points); rankings mean "
                            "little here. Train longer, on a smaller subset, or with less augmentation.")
            print(f"warning: {warnings[-1]}", flush=True)
        g = Group(split, refs["original"], refs["oracle"], o_full, r_full, r_metrics, warnings)
        if cfg.attack.enabled:
            g.attack = self.attack_plan(split, seed, split_view(o_full, split), split_view(r_full, split), g)
            adir = Path(cfg.cache_dir) / "attacks"
            for kind, ref in (("original", g.original), ("oracle", g.oracle)):
                t0 = time.perf_counter()
                g.ref_curves[kind] = g.attack.cached_run(adir / f"{ref.key}-{g.attack.key}.json", ref.net, self.device)
                print(f"[attack] {kind}: " + ", ".join(
                    f"{a} T={_t(c, g.attack.levels)}" for a, c in g.ref_curves[kind].items())
                    + f" ({time.perf_counter() - t0:.1f} s)", flush=True)
        return g

    def group_figure(self, ratio: float | None, seed: int, cell_ids: set[str]) -> None:
        from benchmark.figures import plot_relearn_group

        recs = [r for r in read_results(self.out) if r.get("cell_id") in cell_ids]
        name = f"relearn-{self.cfg.dataset}-{self.cfg.forget.scenario}-r{ratio}-s{seed}.png"
        try:
            path = plot_relearn_group(self.out, recs, self.out / "figures" / name)
            if path:
                print(f"[figure] {path}", flush=True)
        except Exception as e:  # noqa: BLE001 - a figure must never cost a result
            print(f"warning: could not draw {name}: {type(e).__name__}: {e}")

    def attack_plan(self, split: Split, seed: int, o_view: dict, r_view: dict, g: Group) -> AttackPlan:
        cfg, ds, a = self.cfg, self.load_data(), self.cfg.attack
        f_idx = torch.as_tensor(split.forget)
        if a.relearn_set == "forget":
            tr_x, tr_y = ds.train_x[f_idx], ds.train_y[f_idx]
        elif a.relearn_set == "forget_fraction":
            k = float(a.fraction)
            if not 0 < k <= 1:
                raise BenchmarkError(f"attack.fraction={k} is outside (0, 1]; use e.g. attack.fraction=0.5")
            gen = torch.Generator().manual_seed(seed + int(a.seed))
            pick = f_idx[torch.randperm(len(f_idx), generator=gen)[: max(1, round(k * len(f_idx)))]]
            tr_x, tr_y = ds.train_x[pick], ds.train_y[pick]
        elif a.relearn_set == "forgotten_test":
            if not split.forget_classes:
                raise BenchmarkError("attack.relearn_set=forgotten_test needs forget.scenario=class")
            mask = torch.isin(ds.test_y, torch.as_tensor(split.forget_classes))
            tr_x, tr_y = ds.test_x[mask], ds.test_y[mask]
        else:
            raise BenchmarkError(f"unknown attack.relearn_set {a.relearn_set!r}; "
                                 "use forget, forget_fraction or forgotten_test")
        target = RelearnTarget(tr_x, tr_y, ds.train_x[f_idx], ds.train_y[f_idx], self.transform())
        fo, fr = o_view["forget"], r_view["forget"]
        levels = Levels(float(fo.loss.mean()), float(fr.loss.mean()), float(fo.correct.mean() * 100),
                        float(fr.correct.mean() * 100), float(a.delta))
        attackers = {name: attacker_config(name, cfg) for name in a.attackers}
        bs = min(int(c.get("batch_size", 128)) for c in attackers.values())
        max_steps = int(a.max_steps) if a.max_steps else default_budget(len(tr_y), bs, int(a.epochs))
        every = int(a.eval_every) if a.eval_every else default_eval_every(max_steps)
        key = _cell_id({"attack": to_dict(a), "attackers": attackers, "split": split.sha256, "seed": seed,
                        "transform": str(self.transform())})
        return AttackPlan(target, levels, attackers, max_steps, every, seed + int(a.seed),
                          trainable_state(g.original.net), key)

    def context(self, view: dict, split: Split, seed: int, refs: list[dict] | None = None) -> MetricContext:
        return MetricContext(outputs=view, forget_classes=split.forget_classes, num_classes=self.load_data().num_classes,
                             reference_outputs=refs or [], mia_shadow_max=int(self.cfg.eval.mia_shadow_max), seed=seed)

    def forget_fixed_across_seeds(self) -> bool:
        f = self.cfg.forget
        return (f.seed is not None or f.scenario == "indices"
                or (f.scenario == "class" and bool(f.classes)))

    def attach_rmia_references(self, groups: dict[int, Group]) -> None:
        """RMIA's reference models are the other seeds' oracles, valid only when none of them
        trained on this D_f: the forget set must be the same for every seed (forget.seed)."""
        for seed, g in groups.items():
            others = [o for s, o in groups.items() if s != seed]
            if others and all(np.array_equal(o.split.forget, g.split.forget) for o in others):
                g.rmia_refs = [split_view(o.oracle_outputs, o.split) for o in others]
                # the oracle's own RMIA value is the target; recompute its metrics with references
                g.oracle_metrics, _ = compute_metrics(self.context(split_view(g.oracle_outputs, g.split), g.split,
                                                                   seed, g.rmia_refs))

    # ------------------------------------------------------------------ one cell
    def run_cell(self, g: Group, method: str, ratio: float | None, seed: int, cell_id: str) -> dict[str, Any]:
        cfg, ds, split = self.cfg, self.load_data(), g.split
        cls = METHODS.get(method)
        world = world_size(cfg.trainer)
        batch = self.method_kwargs[method].get("batch_size")
        base = {"cell_id": cell_id, "world_size": world, "effective_batch": batch and world * int(batch), "dataset": str(cfg.dataset), "model": str(cfg.model), "method": method,
                "scenario": str(cfg.forget.scenario), "ratio": ratio, "seed": seed, "split_hash": split.sha256,
                "protocol_version": PROTOCOL_VERSION, "config": {**to_dict(cfg), "cell": self.cell(method, ratio, seed)},
                "versions": package_versions(), "git": git_revision(), "warnings": list(g.warnings),
                "reference": {"original": g.original.key, "oracle": g.oracle.key}, "time": time.time()}
        t_cell, t_eval = time.perf_counter(), 0.0
        try:
            curves: dict[str, Curve] = {}
            if method == "original":
                net, seconds, full = g.original.net, 0.0, g.original_outputs
                curves = g.ref_curves.get("original", {})
            elif cls.uses_recipe:  # retrain: the cached oracle is this row
                net, seconds, full = g.oracle.net, g.oracle.train_seconds, g.oracle_outputs
                curves = g.ref_curves.get("oracle", {})
            else:
                L.seed_everything(seed, workers=True, verbose=False)
                data = UnlearnData(images=ds.train_x, labels=ds.train_y, forget=torch.as_tensor(split.forget),
                                   retain=torch.as_tensor(split.retain), transform=self.transform(),
                                   num_classes=ds.num_classes, scenario=split.scenario,
                                   forget_classes=split.forget_classes, seed=seed)
                module = cls(copy.deepcopy(g.original.net), data, **self.method_kwargs[method])
                callbacks = [g.attack.callback()] if g.attack else []
                seconds = fit(module, cfg.trainer, callbacks)
                net = module.net.cpu()
                if callbacks and not callbacks[0].curves:  # ddp_spawn: the callback ran in a worker
                    callbacks[0].run(net, self.device)
                curves = callbacks[0].curves if callbacks else {}
                t0 = time.perf_counter()
                full = full_outputs(net, ds, split, self.transform(), self.device, int(cfg.eval.batch_size))
                t_eval = time.perf_counter() - t0
                save_outputs(self.out / "outputs" / f"{cell_id}.npz", full)
            t0 = time.perf_counter()
            metrics, undefined = compute_metrics(self.context(split_view(full, split), split, seed, g.rmia_refs))
            if g.rmia_refs is None and len(self.seeds) > 1:
                undefined["eval/mia/rmia_auc"] = ("the forget set differs between seeds, so the other seeds' oracles "
                                                  "trained on part of it; fix it with forget.seed=K")
            theta = trainable_state(net)
            derived = {**gap_metrics(metrics, g.oracle_metrics), **time_metrics(seconds, g.oracle.train_seconds),
                       "weight/dist_original": weight_distance(theta, trainable_state(g.original.net)),
                       "weight/dist_oracle": weight_distance(theta, trainable_state(g.oracle.net))}
            values, reasons = split_values(derived)
            metrics.update(values)
            undefined.update(reasons)
            if g.attack and curves:
                for name, curve in curves.items():
                    vals, why = rcd_metrics(curve, g.ref_curves["oracle"][name], g.attack.levels, name)
                    metrics.update(vals)
                    undefined.update(why)
                metrics["time/attack_s"] = sum(c.seconds for c in curves.values())
                atomic_write_text(curves_path(self.out, cell_id), json.dumps(
                    {"levels": {"L_o": g.attack.levels.loss_original, "L_r": g.attack.levels.loss_oracle,
                                "L_star": g.attack.levels.target_loss, "A_o": g.attack.levels.acc_original,
                                "A_r": g.attack.levels.acc_oracle, "A_star": g.attack.levels.target_acc},
                     "curves": {k: c.to_dict() for k, c in curves.items()}}))
            metrics["time/metrics_s"] = time.perf_counter() - t0  # metrics from cached outputs, gaps, RCD
            metrics["time/eval_s"] = t_eval  # the one inference pass over D, D_val and D_test
            metrics["time/cell_s"] = time.perf_counter() - t_cell
            return {**base, "status": "ok", "metrics": metrics, "undefined": undefined,
                    "directions": metric_directions()}
        except BenchmarkError as e:  # the method refuses this cell (e.g. UNSIR outside class forgetting)
            print(f"[skip] {method} ratio={ratio} seed={seed}: {e}", flush=True)
            return {**base, "status": "skipped", "error": str(e), "metrics": {}}
        except Exception as e:  # noqa: BLE001 - one failing cell must not stop the sweep
            tb = traceback.format_exc(limit=3)
            print(f"[fail] {method} ratio={ratio} seed={seed}: {type(e).__name__}: {e}", flush=True)
            return {**base, "status": "failed", "error": f"{type(e).__name__}: {e}", "traceback": tb, "metrics": {}}


def _t(curve: Curve, levels: Levels) -> str:
    t, censored = convergence_step(curve, levels)
    return f"{t}{'+' if censored else ''}"


def _progress_line(r: dict[str, Any], i: int, n: int, eta: float) -> str:
    m = r.get("metrics", {})

    def f(k: str) -> str:
        v = m.get(k)
        return "-" if v is None else f"{v:.1f}"

    status = "" if r["status"] == "ok" else " FAILED"
    return (f"[{i}/{n}] {r['method']:<16} ratio={r['ratio']} seed={r['seed']}{status}  UA {f('eval/ua')}  "
            f"RA {f('eval/ra')}  TA {f('eval/ta')}  gap {f('gap/avg')}  RCD {f('relearn/sgd/rcd')}/"
            f"{f('relearn/adam/rcd')}  {f('time/unlearn_s')} s  ETA {eta:.0f} s")
