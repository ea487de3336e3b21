"""Stage 2, references: what every method of a group (dataset, scenario, ratio, seed) shares.

The split; theta_o and theta_r (trained by ``benchmark.reference`` with the dataset's
recipe, or brought as checkpoints) and their cached outputs; the oracle's metrics;
the memorisation check; the relearning attack plan (its budget set by the oracle) with
the references' own curves (cached); RMIA's reference models (the other seeds' oracles,
when every seed forgets the same D_f); and, with ``eval.population.k``, the population
of originals and oracles (:mod:`benchmark.stages.population`).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmark.callbacks.relearn import (
    CRITERIA,
    Curve,
    Levels,
    RelearnAttack,
    RelearnTarget,
    default_budget,
    default_eval_every,
    mean_delay,
)
from benchmark.config import attacker_config, to_dict
from benchmark.data import ImageData
from benchmark.data.splits import Split, make_split
from benchmark.data.transforms import BatchTransform, make_transform
from benchmark.errors import BenchmarkError
from benchmark.evaluate import cached_outputs, split_view
from benchmark.identity import digest
from benchmark.io import atomic_write_json, state_sha256
from benchmark.metrics import MetricContext, ModelOutputs, compute_metrics
from benchmark.models import trainable_state
from benchmark.module import UnlearnData
from benchmark.reference import Reference, get_reference
from benchmark.stages.population import Population, population_size, prepare_population

MEMORISATION_MIN_GAP = 5.0  # points of forget accuracy theta_o must hold over theta_r
RMIA_SEEDS_DIFFER = ("the forget set differs between seeds, so the other seeds' oracles trained on part of it; "
                     "fix it with forget.seed=K")


@dataclass
class AttackPlan:
    """One group's relearning attack: data, levels, per-attacker budgets, attackers, repeats."""

    target: RelearnTarget
    levels: Levels
    attackers: dict[str, dict[str, Any]]
    max_steps: dict[str, int]
    eval_every: dict[str, int]
    seed: int
    original_state: dict[str, torch.Tensor]
    key: str  # hash of everything that determines an attack's curve besides the model
    stop_after_tail: int | None = None  # attack.stop_after_tail: truncate curves K steps after both criteria
    repeats: int = 1  # attack.repeats: attack seeds per attacker

    def callback(self) -> RelearnAttack:
        return RelearnAttack(self.target, self.attackers, self.max_steps, self.eval_every, self.seed,
                             self.original_state, levels=self.levels, stop_after_tail=self.stop_after_tail,
                             repeats=self.repeats)

    def cached_run(self, path: Path, net: torch.nn.Module, device: torch.device,
                   ref_key: str | None = None) -> dict[str, list[Curve]]:
        """Attacks a reference model once; its curves are cached beside the model.

        The file names what produced it: the reference key, this plan's key, the
        SHA-256 of the attacked weights and the attackers. A file that does not
        decode, names something else or holds a malformed curve is reported in one
        warning line and recomputed, never trusted."""
        ref_key = ref_key or path.stem.removesuffix(f"-{self.key}")  # the file is <ref key>-<attack key>.json
        ident = {"reference": ref_key, "attack": self.key, "model_sha256": state_sha256(net),
                 "attackers": sorted(self.attackers)}
        if path.exists():
            why = None
            try:
                stored = json.loads(path.read_bytes().decode("utf-8"))
                if not isinstance(stored, dict) or not isinstance(stored.get("curves"), dict):
                    why = "have no identity (an older or foreign file)"
                else:
                    diff = [k for k, v in ident.items() if stored.get(k) != v]
                    if diff:
                        why = {"reference": "were made for another reference model", "attack": "were made by "
                               "another attack plan", "model_sha256": "were made from other weights",
                               "attackers": "were made by other attackers"}[diff[0]]
                    else:
                        curves = {k: _checked_runs(v, self.repeats) for k, v in stored["curves"].items()}
                        if set(curves) != set(self.attackers):
                            why = "do not match the attackers"
                        else:
                            return curves
            except Exception as e:  # noqa: BLE001 - undecodable or malformed: recompute
                why = f"are corrupt ({type(e).__name__}: {str(e)[:80]})"
            print(f"warning: cached attack curves {path} {why}; recomputing them", flush=True)
        curves = self.callback().run(net, device)
        atomic_write_json(path, {**ident, "curves": {k: [c.to_dict() for c in runs] for k, runs in curves.items()}})
        return curves


def _checked_runs(d: Any, repeats: int) -> list[Curve]:
    """One attacker's stored curves, one per repeat, each checked."""
    if not isinstance(d, list) or len(d) != repeats:
        raise ValueError(f"expected {repeats} curves (one per repeat)")
    return [_checked_curve(c) for c in d]


def _checked_curve(d: Any) -> Curve:
    """A stored curve, checked: at least one evaluated step, equal lengths, numbers (a
    diverged attack may have stored a non-finite loss; steps are finite integers)."""
    if not isinstance(d, dict):
        raise ValueError(f"a curve is a {type(d).__name__}")
    c = Curve.from_dict(d)
    n = len(c.steps)
    if n == 0 or len(c.loss) != n or len(c.acc) != n or (c.weight_dist and len(c.weight_dist) != n):
        raise ValueError("curve arrays are empty or of different lengths")
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in [*c.steps, c.max_steps]):
        raise ValueError("a curve step is not an integer")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in [*c.loss, *c.acc, *c.weight_dist]):
        raise ValueError("a curve value is not a number")
    if not (isinstance(c.seconds, (int, float)) and math.isfinite(c.seconds)):
        raise ValueError("a curve's seconds is not a finite number")
    return c


@dataclass
class Group:
    """What the methods of one (scenario, ratio, seed) share."""

    ratio: float | None
    seed: int
    split: Split
    transform: BatchTransform
    original: Reference
    oracle: Reference
    original_outputs: ModelOutputs  # full outputs (D in train order, val, test)
    oracle_outputs: ModelOutputs
    oracle_metrics: dict[str, Any]
    warnings: list[str]
    rmia_refs: list[ModelOutputs] | None = None
    rmia_undefined: str | None = None
    attack: AttackPlan | None = None
    ref_curves: dict[str, dict[str, list[Curve]]] = field(default_factory=dict)  # original/oracle -> attacker -> runs
    population: Population | None = None  # eval.population: K originals, 2K oracles and their confidences
    near_classes: list[int] | None = None  # class scenario: the remaining classes nearest the forgotten ones

    def unlearn_data(self, ds: ImageData, seed: int) -> UnlearnData:
        """What a method unlearns in this group: D_f and D_r of the split, the group's transform."""
        s = self.split
        return UnlearnData(images=ds.train_x, labels=ds.train_y, forget=torch.as_tensor(s.forget),
                           retain=torch.as_tensor(s.retain), transform=self.transform, num_classes=ds.num_classes,
                           scenario=s.scenario, forget_classes=s.forget_classes, seed=seed)


def metric_context(ds: ImageData, cfg: Any, g: Group, full: ModelOutputs, **extra: Any) -> MetricContext:
    """A model's metric context in this group (its outputs, the scenario, RMIA references)."""
    return MetricContext(outputs=split_view(full, g.split), forget_classes=g.split.forget_classes,
                         num_classes=ds.num_classes, reference_outputs=g.rmia_refs or [],
                         mia_shadow_max=int(cfg.eval.mia_shadow_max), seed=g.seed,
                         rmia_undefined=g.rmia_undefined, near_classes=g.near_classes, **extra)


def group_split(cfg: Any, ds: ImageData, ratio: float | None, seed: int) -> Split:
    """The split of a group (saved under ``<cache_dir>/splits``)."""
    f = cfg.forget
    forget_seed = seed if f.seed is None else int(f.seed)
    split = make_split(ds.train_y.numpy(), str(f.scenario), ratio, forget_seed,
                       train_subset=cfg.data.train_subset, split_seed=int(cfg.data.split_seed),
                       classes=list(f.classes) if f.classes else None, indices_file=f.indices_file,
                       val_fraction=float(cfg.data.get("val_fraction", 0.1)), retain_file=f.get("retain_file"))
    split.save(Path(cfg.cache_dir) / "splits")
    return split


def reference_batches(cfg: Any, groups: list[tuple[float | None, int]], seeds: list[int]) -> list[
        tuple[float | None, list[int]]]:
    """The groups' references in the order they are prepared: (ratio, seeds) batches, every seed
    of a ratio at once when the other seeds' oracles serve as RMIA references, else one seed."""
    batches: list[tuple[float | None, list[int]]] = []
    done: set[tuple] = set()
    for ratio, seed in groups:
        if (ratio, seed) in done:
            continue
        batch = list(seeds) if forget_fixed_across_seeds(cfg) and len(seeds) > 1 else [seed]
        done.update((ratio, s) for s in batch)
        batches.append((ratio, batch))
    return batches


def prepare_groups(cfg: Any, ds: ImageData, ratio: float | None, seeds: list[int], device: torch.device,
                   known: dict[str, Reference] | None = None) -> dict[int, Group]:
    """One batch of :func:`reference_batches`: each seed's group, with its RMIA references."""
    new = {s: prepare_group(cfg, ds, ratio, s, device, known) for s in seeds}
    attach_rmia_references(cfg, ds, new)
    return new


def original_seeds(cfg: Any, seeds: list[int]) -> list[int]:
    """The seeds of every original model a run needs: each group's, and the population's
    (``eval.population.k`` originals of seeds 0..K-1); an original does not depend on the ratio."""
    k = population_size(cfg)
    return list(dict.fromkeys([*seeds, *range(k)]))


def prepare_group(cfg: Any, ds: ImageData, ratio: float | None, seed: int, device: torch.device,
                  known: dict[str, Reference] | None = None) -> Group:
    """The split, both references with their outputs and oracle metrics, and the attack plan.
    ``known``: reference key -> a model trained elsewhere (``executor=ray``), used as it is."""
    split = group_split(cfg, ds, ratio, seed)
    tf = make_transform(cfg, ds)
    refs: dict[str, Reference] = {}
    for kind in ("original", "oracle"):
        t0 = time.perf_counter()
        refs[kind] = get_reference(kind, cfg, ds, split, tf, seed, known)
        how = "loaded from " + str(refs[kind].checkpoint) if getattr(refs[kind], "checkpoint", None) else (
            "reused from cache" if refs[kind].cached else "trained")
        print(f"[ref] {kind} {how} ({refs[kind].key}, {time.perf_counter() - t0:.1f} s)", flush=True)
    outdir, bs = Path(cfg.cache_dir) / "outputs", int(cfg.eval.batch_size)
    full = {k: cached_outputs(outdir / f"{r.key}.npz", r.net, ds, split, tf, device, bs) for k, r in refs.items()}
    g = Group(ratio, seed, split, tf, refs["original"], refs["oracle"], full["original"], full["oracle"], {}, [])
    g.near_classes = nearest_classes(split_view(g.original_outputs, split), split.forget_classes)
    g.oracle_metrics, _ = compute_metrics(metric_context(ds, cfg, g, g.oracle_outputs))
    o_acc = compute_metrics(metric_context(ds, cfg, g, g.original_outputs), ["eval/forget/acc"])[0]["eval/forget/acc"]
    r_acc = g.oracle_metrics["eval/forget/acc"]
    if o_acc is not None and r_acc is not None and o_acc - r_acc < MEMORISATION_MIN_GAP:
        g.warnings.append(f"the original has not memorised the forget set: forget accuracy {o_acc:.1f} vs the "
                          f"oracle's {r_acc:.1f} (< {MEMORISATION_MIN_GAP:.0f} points); rankings mean little here. "
                          "Train longer, on a smaller subset, or with less augmentation.")
        print(f"warning: {g.warnings[-1]}", flush=True)
    if cfg.attack.enabled:
        attack_references(cfg, g, attack_plan(cfg, ds, g), device)
    g.population = prepare_population(cfg, ds, g, device, known)
    return g


def attack_references(cfg: Any, g: Any, plan: AttackPlan, device: torch.device) -> None:
    """Sets the group's attack plan (its budget from the oracle when ``attack.budget=oracle``)
    and attacks both references through its curve cache: ``g.ref_curves``. ``g`` is a
    classifier's ``Group`` or the generative track's group (``original``, ``oracle``,
    ``attack``, ``ref_curves``)."""
    g.attack = plan
    adir = Path(cfg.cache_dir) / "attacks"
    if budget_from_oracle(cfg):
        calibrate_budget(plan, cfg, g.oracle, device, adir)
    for kind, ref in (("original", g.original), ("oracle", g.oracle)):
        t0 = time.perf_counter()
        g.ref_curves[kind] = plan.cached_run(adir / f"{ref.key}-{plan.key}.json", ref.net, device, ref_key=ref.key)
        print(f"[attack] {kind}: " + ", ".join(f"{a} T_acc={_t(c, plan.levels, 'acc')} T={_t(c, plan.levels, 'loss')}"
                                               for a, c in g.ref_curves[kind].items())
              + f" ({time.perf_counter() - t0:.1f} s)", flush=True)


def attack_plan(cfg: Any, ds: ImageData, g: Group) -> AttackPlan:
    """The group's attack with the fixed budget (``attack.epochs`` or ``attack.max_steps``);
    :func:`calibrate_budget` replaces it with the oracle's when ``attack.budget=oracle``."""
    a, split = cfg.attack, g.split
    f_idx = torch.as_tensor(split.forget)
    if a.relearn_set == "forget":
        tr_x, tr_y = ds.train_x[f_idx], ds.train_y[f_idx]
    elif a.relearn_set == "forget_fraction":
        k = float(a.fraction)
        if not 0 < k <= 1:
            raise BenchmarkError(f"attack.fraction={k} is outside (0, 1]; use e.g. attack.fraction=0.5")
        gen = torch.Generator().manual_seed(g.seed + int(a.seed))
        pick = f_idx[torch.randperm(len(f_idx), generator=gen)[: max(1, round(k * len(f_idx)))]]
        tr_x, tr_y = ds.train_x[pick], ds.train_y[pick]
    elif a.relearn_set == "forgotten_test":
        if not split.forget_classes:
            raise BenchmarkError("attack.relearn_set=forgotten_test needs forget.scenario=class")
        mask = torch.isin(ds.test_y, torch.as_tensor(split.forget_classes))
        tr_x, tr_y = ds.test_x[mask], ds.test_y[mask]
    else:
        raise BenchmarkError(f"unknown attack.relearn_set {a.relearn_set!r}; use forget, forget_fraction or "
                             "forgotten_test")
    target = RelearnTarget(tr_x, tr_y, ds.train_x[f_idx], ds.train_y[f_idx], g.transform)
    fo, fr = split_view(g.original_outputs, split)["forget"], split_view(g.oracle_outputs, split)["forget"]
    levels = Levels(float(fo.loss.mean()), float(fr.loss.mean()), float(fo.correct.mean() * 100),
                    float(fr.correct.mean() * 100), float(a.delta), float(a.get("delta_acc", 0.05)))
    attackers = {str(name): attacker_config(str(name), cfg) for name in a.attackers}
    max_steps, every = {}, {}
    for name, c in attackers.items():
        max_steps[name] = int(a.max_steps) if a.max_steps else default_budget(len(tr_y), int(c.get("batch_size", 128)),
                                                                               int(a.epochs))
        every[name] = _eval_every(a, max_steps[name])
    key = digest({"attack": to_dict(a), "attackers": attackers, "split": split.sha256, "seed": g.seed,
                  "transform": str(g.transform)}, 64)[:16]
    return AttackPlan(target, levels, attackers, max_steps, every, g.seed + int(a.seed),
                      trainable_state(g.original.net), key, stop_after_tail=a.get("stop_after_tail"),
                      repeats=int(a.get("repeats", 1)))


def _eval_every(a: Any, steps: int) -> int:
    """``attack.eval_every``, or 1% of ``steps``."""
    return int(a.eval_every) if a.eval_every else default_eval_every(steps)


def budget_from_oracle(cfg: Any) -> bool:
    """``attack.budget=oracle`` (the default) unless ``attack.max_steps`` fixes the budget."""
    return str(cfg.attack.get("budget", "fixed")) == "oracle" and not cfg.attack.max_steps


def calibrate_budget(plan: AttackPlan, cfg: Any, oracle: Reference, device: torch.device, adir: Path) -> None:
    """Sets each attacker's budget from the oracle (docs/protocol.md s.4, "A budget the oracle sets").

    The oracle is attacked (every repeat) until it meets every defined criterion, up to a hard
    cap of ``attack.cap_epochs`` epochs of the relearn set, evaluated every 1% of the cap; its
    T_cal is the larger of its mean T per criterion (the oracle's own T values are then measured
    again within the budget, on the same grid as every other model's). Every model of the group
    then gets ``attack.budget_factor`` x T_cal steps (so any RCD up to that factor is resolved),
    evaluated every max(1, budget // 100) steps. Where the oracle hit the cap, the budget is the
    cap and the oracle's T stays censored: its RCDs are then undefined, never ratios of a bound.
    The calibration curves are cached like the references' own."""
    a = cfg.attack
    criteria = [c for c in CRITERIA if (plan.levels.acc_undefined_reason if c == "acc"
                                        else plan.levels.undefined_reason) is None]
    if not criteria:
        return  # nothing measurable to relearn: keep the fixed budget (every RCD is undefined anyway)
    n_relearn = len(plan.target.train_y)
    caps = {n: default_budget(n_relearn, int(c.get("batch_size", 128)), int(a.cap_epochs))
            for n, c in plan.attackers.items()}
    # 1% of the cap: T_cal only sizes the budget (the group's T values come from the budgeted runs)
    every = {n: _eval_every(a, caps[n]) for n in caps}
    cal = type(plan)(plan.target, plan.levels, plan.attackers, caps, every, plan.seed,
                     plan.original_state, f"{plan.key}-cal", stop_after_tail=0, repeats=plan.repeats)
    t0 = time.perf_counter()
    curves = cal.cached_run(adir / f"{oracle.key}-{cal.key}.json", oracle.net, device, ref_key=oracle.key)
    factor = float(a.budget_factor)
    notes = []
    for name, runs in curves.items():
        delays = [mean_delay(runs, plan.levels, c) for c in criteria]
        if any(d.censored for d in delays):
            plan.max_steps[name] = caps[name]
            notes.append(f"{name} T_cal={caps[name]}+ (censored at attack.cap_epochs={a.cap_epochs}: its RCDs "
                         "are undefined; raise attack.cap_epochs)")
        else:
            t_cal = max(d.mean for d in delays)
            plan.max_steps[name] = max(1, math.ceil(factor * max(t_cal, 1.0)))
            notes.append(f"{name} T_cal={t_cal:g} -> budget {plan.max_steps[name]}")
        plan.eval_every[name] = _eval_every(a, plan.max_steps[name])
    plan.key = digest({"plan": plan.key, "max_steps": plan.max_steps, "eval_every": plan.eval_every}, 64)[:16]
    print(f"[attack] budget from the oracle (x{factor:g}): " + "; ".join(notes)
          + f" ({time.perf_counter() - t0:.1f} s)", flush=True)


NEAR_CLASSES = 2  # remaining classes scored by eval/test_near/acc in the class scenario


def nearest_classes(outputs: ModelOutputs, forget_classes: list[int] | None) -> list[int] | None:
    """The NEAR_CLASSES remaining classes with the highest mean softmax of theta_o on the forgotten
    classes' test images (None outside the class scenario or without such images)."""
    test = outputs.get("test")
    if not forget_classes or test is None or not test.n:
        return None
    mask = np.isin(test.labels, np.asarray(forget_classes, dtype=np.int64))
    if not mask.any():
        return None
    z = test.logits[mask].astype(np.float64)
    p = np.exp(z - z.max(1, keepdims=True))
    mean = (p / p.sum(1, keepdims=True)).mean(0)
    mean[np.asarray(forget_classes, dtype=np.int64)] = -1.0
    k = min(NEAR_CLASSES, int((mean >= 0).sum()))
    return sorted(int(c) for c in np.argsort(-mean, kind="stable")[:k])


def forget_fixed_across_seeds(cfg: Any) -> bool:
    f = cfg.forget
    return f.seed is not None or f.scenario == "indices" or (f.scenario == "class" and bool(f.classes))


def attach_rmia_references(cfg: Any, ds: ImageData, groups: dict[int, Group]) -> None:
    """RMIA's reference models are the other seeds' oracles, valid only when none of them
    trained on this D_f: the forget set must be the same for every seed (forget.seed)."""
    for seed, g in groups.items():
        others = [o for s, o in groups.items() if s != seed]
        if others and all(np.array_equal(o.split.forget, g.split.forget) for o in others):
            g.rmia_refs = [split_view(o.oracle_outputs, o.split) for o in others]
            # the oracle's own RMIA value is the target: recompute its metrics with references
            g.oracle_metrics, _ = compute_metrics(metric_context(ds, cfg, g, g.oracle_outputs))
        elif others or len(cfg.seeds) > 1:
            g.rmia_undefined = RMIA_SEEDS_DIFFER


def _t(curves: list[Curve], levels: Levels, criterion: str) -> str:
    d = mean_delay(curves, levels, criterion)
    return f"{d.mean:g}{'+' if d.censored else ''}"
