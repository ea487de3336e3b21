"""Result loggers: Weights & Biases (offline unless logged in) or none.

The local ``results.jsonl`` is always written first; a W&B failure prints one
warning line and never loses a result.
"""

from __future__ import annotations

import netrc
import os
from pathlib import Path
from typing import Any

from benchmark.results import load_curves


class NullLogger:
    def log_cell(self, record: dict[str, Any]) -> None:
        pass

    def finish(self, output_dir: Path) -> None:
        pass


def wandb_mode(requested: str) -> str:
    """``auto``: online when the user is logged in (WANDB_API_KEY or ~/.netrc), else offline.
    An explicit WANDB_MODE in the environment wins."""
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    if requested != "auto":
        return requested
    if os.environ.get("WANDB_API_KEY"):
        return "online"
    try:
        rc = netrc.netrc()
        if any("wandb" in host for host in rc.hosts):
            return "online"
    except (OSError, netrc.NetrcParseError):
        pass
    return "offline"


class WandbLogger:
    """One W&B run per cell: project = logger.project, group = dataset/scenario/ratio,
    job_type = method, tags = method, dataset, seed."""

    def __init__(self, cfg: Any) -> None:
        self.project = str(cfg.logger.project)
        self.mode = wandb_mode(str(cfg.logger.mode))
        self.dir = Path(str(cfg.logger.dir))
        self.broken = False
        self.logged = 0
        self.output_dir: Path | None = None


    def log_cell(self, record: dict[str, Any]) -> None:
        if self.broken or record.get("status") != "ok":
            return
        try:
            import wandb

            self.dir.mkdir(parents=True, exist_ok=True)
            run = wandb.init(
                project=self.project, mode=self.mode, dir=str(self.dir),
                group=f"{record['dataset']}/{record['scenario']}/{record['ratio']}",
                job_type=record["method"], name=f"{record['method']}-r{record['ratio']}-s{record['seed']}",
                tags=[record["method"], record["dataset"], f"seed{record['seed']}"],
                config={**record["config"], "split_hash": record["split_hash"], "git": record["git"],
                        "cell_id": record["cell_id"], "protocol_version": record["protocol_version"],
                        "world_size": record.get("world_size"), "effective_batch": record.get("effective_batch")},
                settings=wandb.Settings(silent=True, console="off"),
                reinit="finish_previous",
            )
            values = {k: v for k, v in record["metrics"].items() if isinstance(v, (int, float))}
            run.log(values)
            stored = load_curves(str(record["config"].get("output_dir", "")), record["cell_id"]) or {}
            target = stored.get("levels", {}).get("L_star", 0.0)
            for attacker, c in stored.get("curves", {}).items():
                run.log({f"relearn/{attacker}/curve": wandb.plot.line_series(
                    xs=c["steps"], ys=[c["loss"], [target] * len(c["steps"])],
                    keys=["forget loss", "target L*"], title=f"relearning ({attacker})", xname="attack step")})
            run.summary.update(values)
            run.finish()
            self.logged += 1
        except Exception as e:  # noqa: BLE001 - tracking must never cost a local result
            self.broken = True
            print(f"warning: W&B logging failed ({type(e).__name__}: {str(e)[:120]}); results.jsonl is complete, "
                  "set logger=none to skip W&B")

    def finish(self, output_dir: Path) -> None:
        """A leaderboard run: a ``wandb.Table`` (method x ratio, mean ± 95% interval) and
        ``results.jsonl`` as an artifact."""
        if self.broken or not self.logged:
            return
        try:
            import wandb

            from benchmark.report import group_summaries
            from benchmark.results import read_results

            records = read_results(output_dir)
            cols = ["dataset", "scenario", "ratio", "method", "n", "gap/avg", "eval/ua", "eval/ra", "eval/ta",
                    "eval/mia/efficacy", "relearn/sgd/rcd", "relearn/adam/rcd"]
            table = wandb.Table(columns=cols + [f"{c} ci" for c in cols[5:]])
            for (ds, sc, ratio, method), summ in sorted(group_summaries(records).items(), key=str):
                means = [summ.get(c, {}).get("mean") for c in cols[5:]]
                halfs = [summ.get(c, {}).get("half_width") for c in cols[5:]]
                table.add_data(ds, sc, ratio, method, summ["_n"], *means, *halfs)
            run = wandb.init(project=self.project, mode=self.mode, dir=str(self.dir), job_type="leaderboard",
                             name="leaderboard", settings=wandb.Settings(silent=True, console="off"),
                             reinit="finish_previous")
            run.log({"leaderboard": table})
            art = wandb.Artifact("results", type="results")
            art.add_file(str(Path(output_dir) / "results.jsonl"))
            run.log_artifact(art)
            run.finish()
        except Exception as e:  # noqa: BLE001
            print(f"warning: W&B leaderboard failed ({type(e).__name__}: {str(e)[:120]}); local results are complete")


def make_logger(cfg: Any) -> NullLogger | WandbLogger:
    name = str(cfg.logger.name) if cfg.get("logger") else "none"
    if name in ("none", "None", "false", "False"):
        return NullLogger()
    if name != "wandb":
        from benchmark.errors import BenchmarkError

        raise BenchmarkError(f"unknown logger {name!r}; use logger.name=wandb or logger=none")
    return WandbLogger(cfg)
