"""Stage 5, sinks: where a cell result goes, fed in memory.

- :class:`ResultsSink`: the cell's relearning curves, then its record in the
  append-only ``results.jsonl`` (the curves file exists before any record names it).
- :class:`WandbSink`: one W&B run per cell (diagnostics by step, metrics, curves as
  line plots), and the leaderboard run at the end; offline unless logged in, and a
  W&B failure never costs a local result.
- :class:`Progress`: one line per cell, its columns from the metric registry.
- figures of each finished group.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from benchmark.io import atomic_write_json
from benchmark.metrics import progress_keys
from benchmark.results import append_record, curves_path, population_path, row_label
from benchmark.stages.result import CellResult


def diagnostics_path(out: Path, cell_id: str) -> Path:
    return out / "diagnostics" / f"{cell_id}.csv"


class ResultsSink:
    def __init__(self, out: Path) -> None:
        self.out = out

    def write(self, res: CellResult, record: dict[str, Any]) -> None:
        if res.status == "ok" and res.curves:
            atomic_write_json(curves_path(self.out, res.cell.cell_id), {
                "levels": res.levels_dict(),
                "curves": {k: [c.to_dict() for c in runs] for k, runs in res.curves.items()}})
        if res.status == "ok" and res.population:
            atomic_write_json(population_path(self.out, res.cell.cell_id), res.population)
        append_record(self.out, record)


class WandbSink:
    """One W&B run per ok cell: project = logger.project, group = dataset/scenario/ratio,
    job_type = method, tags = method, dataset, seed."""

    def __init__(self, cfg: Any) -> None:
        from benchmark.loggers import wandb_mode

        self.enabled = str(cfg.logger.name) not in ("none", "None", "false", "False")
        if self.enabled and str(cfg.logger.name) != "wandb":
            from benchmark.errors import BenchmarkError

            raise BenchmarkError(f"unknown logger {cfg.logger.name!r}; use logger.name=wandb or logger=none")
        self.project, self.dir = str(cfg.logger.project), Path(str(cfg.logger.dir))
        self.mode = wandb_mode(str(cfg.logger.mode)) if self.enabled else "disabled"
        self.broken, self.logged = False, 0

    def write(self, res: CellResult, record: dict[str, Any]) -> None:
        if not self.enabled or self.broken or res.status != "ok":
            return
        try:
            import wandb

            self.dir.mkdir(parents=True, exist_ok=True)
            c = res.cell
            label = row_label(c.method, c.variant, c.hparams_source)
            run = wandb.init(
                project=self.project, mode=self.mode, dir=str(self.dir),
                group=f"{record['dataset']}/{record['scenario']}/{record['ratio']}", job_type=c.method,
                name=f"{label}-r{c.ratio}-s{c.seed}", tags=[c.method, record["dataset"], f"seed{c.seed}"],
                config={"identity": c.identity, "hparams": c.hparams, "variant": c.variant, **c.keys,
                        "code": c.code["fingerprint"], "split_hash": res.split_hash, "git": record["git"],
                        "protocol_version": record["protocol_version"], "world_size": res.world_size},
                settings=wandb.Settings(silent=True, console="off"), reinit="finish_previous")
            last = 0
            for row in res.diagnostics:  # the unlearn/* values, by optimiser step
                step = int(row.get("step", 0))
                run.log({k: v for k, v in row.items() if k != "step"}, step=step)
                last = max(last, step)
            values = {k: v for k, v in res.metrics.items() if isinstance(v, (int, float))}
            run.log(values, step=last + 1)
            target = (res.levels_dict() or {}).get("A_star", 0.0)
            for attacker, runs in res.curves.items():
                curve = runs[0]  # repeat 0 (every repeat is in OUT/curves/<cell_id>.json)
                run.log({f"relearn/{attacker}/curve": wandb.plot.line_series(
                    xs=curve.steps, ys=[curve.acc, [target] * len(curve.steps)],
                    keys=["forget accuracy", "target A*"], title=f"relearning ({attacker}, repeat 0)",
                    xname="attack step")}, step=last + 1)
            if res.samples is not None and res.samples.grid is not None:  # task=generate: the sample grid
                from benchmark.figures import grid_image

                forgot = ", ".join(str(c) for c in res.samples.forget_classes)
                run.log({"samples/grid": wandb.Image(grid_image(res.samples.grid), caption=(
                    f"{label}: one row per class 0..{len(res.samples.class_acc) - 1} (forgotten: {forgot}), "
                    "fixed-seed DDIM samples")),
                    **{f"samples/class_acc/{c}": v for c, v in res.samples.class_acc.items()}}, step=last + 1)
            run.summary.update(values)
            run.finish()
            self.logged += 1
        except Exception as e:  # noqa: BLE001 - tracking must never cost a local result
            self.broken = True
            print(f"warning: W&B logging failed ({type(e).__name__}: {str(e)[:120]}); results.jsonl is complete, "
                  "set logger=none to skip W&B", flush=True)

    def finish(self, out: Path) -> None:
        if not self.enabled or self.broken or not self.logged:
            return
        from benchmark.loggers import log_leaderboard

        log_leaderboard(self.project, self.mode, self.dir, out)


class Progress:
    """``[i/n] method ratio seed  UA .. RA .. ...  ETA``: one line per finished cell, in the order
    cells finish. With ``executor=ray`` (``running`` set) the line ends with the cells running
    and failed so far: ``ETA 40 s (8 running, 1 failed)``."""

    def __init__(self, total: int) -> None:
        self.total, self.n, self.t0 = total, 0, time.perf_counter()
        self.failed = 0
        self.running: int | None = None  # cells running now (set by executor=ray before each write)

    def write(self, res: CellResult, record: dict[str, Any]) -> None:
        self.n += 1
        self.failed += res.status == "failed"
        # the rate so far: with cells in parallel it is the sweep's throughput, not one cell's time
        eta = (time.perf_counter() - self.t0) / self.n * (self.total - self.n)
        c = res.cell
        label = row_label(c.method, c.variant, c.hparams_source)
        head = f"[{self.n}/{self.total}] {label:<16} ratio={c.ratio} seed={c.seed}"
        tail = f"ETA {eta:.0f} s" + ("" if self.running is None else f" ({self.running} running, "
                                                                         f"{self.failed} failed)")
        if res.status != "ok":
            print(f"{head}  {res.status.upper()}: {res.error}  {tail}", flush=True)
            return
        attackers = list(res.curves)
        cells = []
        for col in progress_keys(attackers):
            if col.key not in res.metrics:  # the other task's columns (classifier vs generator)
                continue
            v = res.metrics.get(col.key)
            cells.append(f"{col.title} {'-' if v is None else f'{v:.{col.digits}f}'}")
        print(f"{head}  " + "  ".join(cells) + f"  {tail}", flush=True)
