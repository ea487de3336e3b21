"""Grid -> results, in five stages that data flows down once (``benchmark/stages/``):

1. **plan** (``stages/plan.py``): cells of the grid with their identities, the shard,
   what is done already; every input checked before any data loads;
2. **references** (``stages/references.py``): per group (dataset, scenario, ratio,
   seed) the split, theta_o and theta_r with their outputs, the oracle's metrics and
   the references' relearning curves;
3. **cell** (``stages/cell.py``): one method run, its attack and its metrics;
4. **result** (``stages/result.py``): the typed cell result and its record;
5. **sinks** (``stages/sinks.py``): results.jsonl, W&B, progress, figures, fed in memory.

This module only wires them together, one cell after another (``executor=local``); with
``executor=ray`` (``benchmark/ray_executor.py``) stages 2 and 3 run as Ray tasks, and this
process still plans and is the one writer of every sink.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from benchmark.data import ImageData, load_dataset
from benchmark.estimate import print_estimate
from benchmark.io import received_signal, signals_held
from benchmark.report import print_table, write_summary
from benchmark.results import check_writable, read_records, row_label
from benchmark.schema import check_loaded, executor_name
from benchmark.stages.cell import run_cell
from benchmark.stages.generate import run_gen_cell
from benchmark.stages.plan import Plan, make_plan
from benchmark.stages.references import prepare_groups, reference_batches
from benchmark.stages.result import CellResult
from benchmark.stages.sinks import Progress, ResultsSink, WandbSink, diagnostics_path
from benchmark.training import eval_device


class Runner:
    """Runs one dataset's grid from a composed config (``benchmark.config.compose``).

    Construction is the plan stage: it fails, in one line, on any bad input before
    any data loads (the dataset's presence is checked last, before any training)."""

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg
        self.out = check_writable(cfg.output_dir)
        check_writable(cfg.cache_dir, what="cache_dir")
        records = sorted(read_records(self.out).records, key=lambda r: float(r.get("time") or 0))
        done = {r["config_id"]: r for r in records if r.get("config_id")}  # the newest per configuration
        self.plan: Plan = make_plan(cfg, done)
        self.device = eval_device(cfg.trainer)
        self.ds: ImageData = self._load_data()
        check_loaded(cfg, self.ds.num_classes)  # what only the data can tell (imagefolder), before any training
        self.finished = 0  # cells written by this run (what an interruption reports)
        self.in_flight = None  # the cell being run, if any

    def _load_data(self) -> ImageData:
        d, t0 = self.cfg.data, time.perf_counter()
        ds = load_dataset(str(d.name), d.root, bool(d.download), cache_dir=str(Path(self.cfg.cache_dir)))
        print(f"[data] {d.name}: {len(ds.train_y)} train / {len(ds.test_y)} test images, {ds.num_classes} classes "
              f"({time.perf_counter() - t0:.1f} s)", flush=True)
        return ds

    def run(self) -> list[dict[str, Any]]:
        cfg, plan = self.cfg, self.plan
        shard = f" shard {cfg.shard}," if cfg.get("shard") else ""
        stale = f", {len(plan.stale)} stale (other code: rerun)" if plan.stale else ""
        print(f"[bench] {cfg.dataset}/{cfg.forget.scenario}:{shard} {len(plan.cells)} cells "
              f"({len(plan.cells) - len(plan.todo)} done already{stale}), methods: {', '.join(plan.methods)}",
              flush=True)
        generate = str(cfg.get("task", "classify")) == "generate"
        if not generate:
            print_estimate(cfg, plan, self.ds, self.device)
        sinks = [ResultsSink(self.out), WandbSink(cfg), Progress(len(plan.todo))]
        if executor_name(cfg) == "ray":  # the schema keeps task=generate local
            from benchmark.ray_executor import run_ray

            run_ray(self, sinks)
        elif generate:
            self._run_generate(sinks)
        else:
            self._run_local(sinks)
        sinks[1].finish(self.out)
        current = {c.cell_id for c in plan.cells}
        mine = [r for r in read_records(self.out).records if r.get("cell_id") in current]
        print_table(mine, plan.methods)
        write_summary(self.out)
        return mine

    def _run_generate(self, sinks: list) -> None:
        """``task=generate`` (docs/protocol.md s.10): one evaluator for every group, then each group's
        generators and cells, one after another."""
        from benchmark.generative.evaluation import get_evaluator
        from benchmark.stages.generate import prepare_gen_group

        cfg, plan = self.cfg, self.plan
        evaluator = None
        for ratio, seed in plan.groups():
            if evaluator is None:
                t0 = time.perf_counter()
                evaluator = get_evaluator(cfg, self.ds, self.device)
                print(f"[gen] evaluator {evaluator.key}: test accuracy {evaluator.test_acc:.1f}% "
                      f"({time.perf_counter() - t0:.1f} s)", flush=True)
            g = prepare_gen_group(cfg, self.ds, ratio, seed, self.device, evaluator)
            results = self._run_cells(sinks, run_gen_cell, g, ratio, seed)
            if results and cfg.attack.enabled and g.attack is not None:
                self.figure(ratio, seed, results, g.ref_curves, g.attack.levels)
            self._sample_grids(ratio, seed, results, g)

    def _sample_grids(self, ratio: float | None, seed: int, results: list, g: Any) -> None:
        """task=generate: a sample-grid PNG per method (one row per class) and one of the whole group
        (original, oracle, each method side by side)."""
        from benchmark.figures import file_label, plot_sample_grids

        rows = [("original", g.original_eval.grid), ("retrain", g.oracle_eval.grid)]
        rows += [(row_label(r.cell.method, r.cell.variant, r.cell.hparams_source), r.samples.grid)
                 for r in results if r.status == "ok" and r.samples is not None
                 and r.cell.method not in ("original", "retrain")]
        base = f"{self.cfg.dataset}-{self.cfg.forget.scenario}-s{seed}"
        forgot = list(g.split.forget_classes)
        try:
            for label, grid in rows:
                plot_sample_grids([(label, grid)], forgot, f"{self.cfg.dataset} seed={seed}: {label}",
                                  self.out / "figures" / f"samples-{base}-{file_label(label)}.png")
            path = plot_sample_grids(rows, forgot, f"{self.cfg.dataset} class forgetting {forgot} seed={seed}",
                                     self.out / "figures" / f"samples-{base}.png")
            print(f"[figure] {path}", flush=True)
        except Exception as e:  # noqa: BLE001 - a figure must never cost a result
            print(f"warning: could not draw the sample grids: {type(e).__name__}: {e}", flush=True)

    def _run_local(self, sinks: list) -> None:
        """``executor=local``: every group's references, then its cells, one after another."""
        cfg, plan = self.cfg, self.plan
        for ratio, seeds in reference_batches(cfg, plan.groups(), plan.seeds):
            groups = prepare_groups(cfg, self.ds, ratio, seeds, self.device)
            for seed in seeds:
                g = groups.pop(seed)
                results = self._run_cells(sinks, run_cell, g, ratio, seed)
                if results and cfg.attack.enabled and g.attack is not None:
                    self.figure(ratio, seed, results, g.ref_curves, g.attack.levels)

    def _run_cells(self, sinks: list, run: Any, g: Any, ratio: float | None, seed: int) -> list[CellResult]:
        """The group's cells still to do, one after another, each written as it finishes."""
        cfg, results = self.cfg, []
        for cell in (c for c in self.plan.todo if c.group == (ratio, seed)):
            print(f"[run] {cell.method} ratio={ratio} seed={seed}", flush=True)
            self.in_flight = cell
            try:
                res = run(cfg, self.ds, g, cell, self.device, diagnostics_path(self.out, cell.cell_id))
                self.write(sinks, res)
            except BaseException:
                if self.in_flight is not None and received_signal() is not None:
                    # abandoned: nothing of it stays (a fit that was cut may have written its diagnostics)
                    diagnostics_path(self.out, cell.cell_id).unlink(missing_ok=True)
                raise
            results.append(res)
        return results

    def write(self, sinks: list, res: CellResult) -> None:
        """A finished cell to every sink, whole: curves, record, W&B, progress (the one writer of
        records, whichever executor ran the cell)."""
        with signals_held():
            record = res.record(self.cfg)
            for sink in sinks:
                sink.write(res, record)
            self.finished += 1
            self.in_flight = None

    def figure(self, ratio: float | None, seed: int, results: list, ref_curves: dict, levels: Any) -> None:
        """The relearning figure of one group: the references' curves and each ok cell's."""
        from benchmark.figures import plot_relearn_group

        rows = [("original", "original", ref_curves.get("original", {})),
                ("retrain", "retrain", ref_curves.get("oracle", {}))]
        rows += [(row_label(r.cell.method, r.cell.variant, r.cell.hparams_source), r.cell.method, r.curves)
                 for r in results if r.status == "ok" and r.cell.method not in ("original", "retrain")]
        levels = {"A_star": levels.target_acc, "A_r": levels.acc_oracle}
        name = f"relearn-{self.cfg.dataset}-{self.cfg.forget.scenario}-r{ratio}-s{seed}.png"
        try:
            path = plot_relearn_group(rows, levels, f"{self.cfg.dataset} {self.cfg.forget.scenario} ratio={ratio} "
                                      f"seed={seed}", self.out / "figures" / name)
            if path:
                print(f"[figure] {path}", flush=True)
        except Exception as e:  # noqa: BLE001 - a figure must never cost a result
            print(f"warning: could not draw {name}: {type(e).__name__}: {e}", flush=True)
