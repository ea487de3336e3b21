"""Stages 2 and 3 for ``task=generate`` (docs/protocol.md s.8): a group's reference generators,
evaluator and attack plan, and one generative method's cell, to the classifiers'
:class:`~benchmark.stages.result.CellResult` (so the sinks, records, report and W&B are theirs).

- references: the split (class scenario), the original generator (trained on D) and the oracle
  (on D_r) from ``benchmark.reference``'s cache with the generative recipe, the evaluator
  (cached, one per dataset), both references' sample scores and the oracle's metrics, the
  relearning levels measured on the generators themselves, the attack budget from the oracle
  and the references' own curves (cached like the classifiers');
- cell: the method unlearns a copy of the original through the same ``fit`` (timed, with
  diagnostics); the attack callback relearns a copy; the result is sampled and scored once.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from benchmark.callbacks.relearn import Curve, default_budget
from benchmark.config import attacker_config, to_dict
from benchmark.data import ImageData
from benchmark.data.splits import Split, make_split
from benchmark.data.transforms import BatchTransform
from benchmark.errors import MethodRefusal
from benchmark.evaluate import non_finite
from benchmark.generative.diffusion import Diffusion
from benchmark.generative.evaluation import Evaluator, SampleEval, get_evaluator, score_generator
from benchmark.generative.methods import GenData, diffusion_of, method_registry
from benchmark.generative.relearn import GenRelearnTarget, generator_levels
from benchmark.identity import digest
from benchmark.metrics import MetricContext, compute_metrics
from benchmark.models import trainable_state
from benchmark.reference import Reference, get_reference
from benchmark.stages.cell import unlearn_phase
from benchmark.stages.plan import Cell
from benchmark.stages.references import AttackPlan, _eval_every, attack_references
from benchmark.stages.result import CellResult
from benchmark.training import world_size

MEMORISATION_MIN_GAP = 5.0  # points of forget-class sample accuracy the original must hold over the oracle


def generator_transform(ds: ImageData) -> BatchTransform:
    """uint8 -> [-1, 1] per channel: what the generators are trained on and sample."""
    c = int(ds.train_x.shape[1])
    return BatchTransform((0.5,) * c, (0.5,) * c)


@dataclass
class GenGroup:
    """What the generative methods of one (class scenario, seed) share."""

    ratio: float | None
    seed: int
    split: Split
    transform: BatchTransform
    diffusion: Diffusion
    evaluator: Evaluator
    original: Reference
    oracle: Reference
    original_eval: SampleEval
    oracle_eval: SampleEval
    oracle_metrics: dict[str, Any]
    warnings: list[str]
    attack: AttackPlan | None = None
    ref_curves: dict[str, dict[str, list[Curve]]] = field(default_factory=dict)

    def unlearn_data(self, ds: ImageData, seed: int) -> GenData:
        s = self.split
        return GenData(images=ds.train_x, labels=ds.train_y, forget=torch.as_tensor(s.forget),
                       retain=torch.as_tensor(s.retain), transform=self.transform, num_classes=ds.num_classes,
                       scenario=s.scenario, forget_classes=s.forget_classes, seed=seed, diffusion=self.diffusion)

    def score(self, cfg: Any, ds: ImageData, net: torch.nn.Module, device: torch.device) -> SampleEval:
        """The fixed-seed samples of ``net`` scored by the evaluator (the group's seed: every model of
        the group starts from the same noise)."""
        return score_generator(net.to(device), self.diffusion, self.evaluator, ds.test_x, ds.test_y,
                               list(self.split.forget_classes), cfg.generate, self.seed, device,
                               int(cfg.generate.grid_per_class))


def context(ds: ImageData, g: GenGroup, samples: SampleEval, **extra: Any) -> MetricContext:
    return MetricContext(outputs={}, forget_classes=list(g.split.forget_classes), num_classes=ds.num_classes,
                         seed=g.seed, samples=samples, **extra)


def prepare_gen_group(cfg: Any, ds: ImageData, ratio: float | None, seed: int, device: torch.device,
                      evaluator: Evaluator | None = None) -> GenGroup:
    """The split, both reference generators with their scores, the oracle's metrics and the attack."""
    f = cfg.forget
    forget_seed = seed if f.seed is None else int(f.seed)
    split = make_split(ds.train_y.numpy(), str(f.scenario), ratio, forget_seed,
                       train_subset=cfg.data.train_subset, split_seed=int(cfg.data.split_seed),
                       classes=list(f.classes) if f.classes else None,
                       val_fraction=float(cfg.data.get("val_fraction", 0.1)))
    split.save(Path(cfg.cache_dir) / "splits")
    tf = generator_transform(ds)
    evaluator = evaluator or get_evaluator(cfg, ds, device)
    refs: dict[str, Reference] = {}
    for kind in ("original", "oracle"):
        t0 = time.perf_counter()
        refs[kind] = get_reference(kind, cfg, ds, split, tf, seed)
        print(f"[ref] {kind} generator {'reused from cache' if refs[kind].cached else 'trained'} "
              f"({refs[kind].key}, {time.perf_counter() - t0:.1f} s)", flush=True)
    diffusion = diffusion_of(cfg, ds)
    t0 = time.perf_counter()
    scores = {}
    for kind, r in refs.items():
        scores[kind] = score_generator(r.net.to(device), diffusion, evaluator, ds.test_x, ds.test_y,
                                       list(split.forget_classes), cfg.generate, seed, device,
                                       int(cfg.generate.grid_per_class))
    g = GenGroup(ratio, seed, split, tf, diffusion, evaluator, refs["original"], refs["oracle"],
                 scores["original"], scores["oracle"], {}, [])
    g.oracle_metrics, _ = compute_metrics(context(ds, g, g.oracle_eval))
    for kind, s in scores.items():
        per = " ".join(f"{c}:{a:.0f}" for c, a in sorted(s.class_acc.items()))
        print(f"[gen] {kind}: evaluator accuracy per class of its samples {per} (forgotten "
              f"{split.forget_classes}: {s.forget_acc():.1f}); FID {s.fid:.2f}", flush=True)
    print(f"[gen] sampled and scored both references ({time.perf_counter() - t0:.1f} s)", flush=True)
    gap = g.original_eval.forget_acc() - g.oracle_eval.forget_acc()
    if gap < MEMORISATION_MIN_GAP:
        g.warnings.append(f"the original generator's forgotten-class samples are recognised at "
                          f"{g.original_eval.forget_acc():.1f}% vs the oracle's {g.oracle_eval.forget_acc():.1f}% "
                          f"(< {MEMORISATION_MIN_GAP:.0f} points): forgetting is not measurable; train longer")
        print(f"warning: {g.warnings[-1]}", flush=True)
    if cfg.attack.enabled:
        attack_references(cfg, g, gen_attack_plan(cfg, ds, g, device), device)
    return g


def gen_attack_plan(cfg: Any, ds: ImageData, g: GenGroup, device: torch.device) -> AttackPlan:
    """The group's generator attack with the fixed budget (``attack.epochs`` or ``max_steps``);
    ``calibrate_budget`` replaces it with the oracle's when ``attack.budget=oracle``. The levels
    are measured on the reference generators exactly as each attack step is."""
    a, split = cfg.attack, g.split
    f_idx = torch.as_tensor(split.forget)
    gcfg = cfg.generate
    target = GenRelearnTarget(ds.train_x[f_idx], ds.train_y[f_idx], ds.train_x[f_idx], ds.train_y[f_idx],
                              g.transform, g.diffusion, g.evaluator, list(split.forget_classes),
                              int(gcfg.attack_samples),
                              {"sample_steps": int(gcfg.sample_steps), "guidance": float(gcfg.guidance)}, g.seed)
    levels = generator_levels(g.original.net, g.oracle.net, target, device, float(a.delta),
                              float(a.get("delta_acc", 0.05)))
    attackers = {str(name): attacker_config(str(name), cfg) for name in a.attackers}
    max_steps, every = {}, {}
    for name, c in attackers.items():
        max_steps[name] = int(a.max_steps) if a.max_steps else default_budget(len(f_idx), int(c.get("batch_size", 128)),
                                                                               int(a.epochs))
        every[name] = _eval_every(a, max_steps[name])
    key = digest({"task": "generate", "attack": to_dict(a), "attackers": attackers, "split": split.sha256,
                  "seed": g.seed, "generate": to_dict(gcfg), "evaluator": g.evaluator.key,
                  "diffusion": to_dict(cfg.data.diffusion)}, 64)[:16]
    return AttackPlan(target, levels, attackers, max_steps, every, g.seed + int(a.seed),
                         trainable_state(g.original.net), key, stop_after_tail=a.get("stop_after_tail"),
                         repeats=int(a.get("repeats", 1)))


def run_gen_cell(cfg: Any, ds: ImageData, g: GenGroup, cell: Cell, device: torch.device,
                 diagnostics_path: Any) -> CellResult:
    """Runs one generative cell; never raises (a failure is a result)."""
    res = CellResult(cell=cell, status="ok", split_hash=g.split.sha256, warnings=list(g.warnings),
                     reference_keys={"original": g.original.key, "oracle": g.oracle.key,
                                     "evaluator": g.evaluator.key},
                     world_size=world_size(cfg.trainer))
    batch = cell.hparams.get("batch_size")
    res.effective_batch = batch and res.world_size * int(batch)
    if cell.skip_reason:
        return res.skip(cell.skip_reason)
    t_cell = time.perf_counter()
    try:
        curves = _unlearn(cfg, ds, g, cell, device, diagnostics_path, res)
        why = non_finite(res.net, None)
        if why:
            return res.fail(why)
        t0 = time.perf_counter()
        if res.samples is None:
            res.samples = g.score(cfg, ds, res.net, device)
            res.timings["eval_s"] = time.perf_counter() - t0
        else:
            res.timings["eval_s"] = 0.0
        res.timings["cell_s"] = time.perf_counter() - t_cell
        res.net = res.net.cpu()
        weights = {"model": trainable_state(res.net), "original": trainable_state(g.original.net),
                   "oracle": trainable_state(g.oracle.net)}
        levels = g.attack.levels if g.attack else None
        ctx = context(ds, g, res.samples, oracle_values=g.oracle_metrics, weights=weights, timings=res.timings,
                      curves=curves or None, oracle_curves=g.ref_curves.get("oracle"), levels=levels)
        res.metrics, res.undefined = compute_metrics(ctx)
        res.curves, res.levels = curves, levels
        return res
    except MethodRefusal as e:
        return res.skip(str(e))
    except Exception as e:  # noqa: BLE001 - one failing cell must not stop the sweep
        return res.fail(f"{type(e).__name__}: {e}", traceback.format_exc(limit=4))


def _unlearn(cfg: Any, ds: ImageData, g: GenGroup, cell: Cell, device: torch.device, diagnostics_path: Any,
             res: CellResult) -> dict[str, list[Curve]]:
    cls = method_registry(cfg).get(cell.method)
    reference, curves = unlearn_phase(cfg, ds, g, cell, cls, device, diagnostics_path, res)
    if reference is not None:  # theta_o or theta_r: the group's scores of its samples
        res.samples = g.original_eval if reference == "original" else g.oracle_eval
    return curves
