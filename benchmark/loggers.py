"""Result loggers: Weights & Biases (offline unless logged in) or none.

The local ``results.jsonl`` is always written first; a W&B failure prints one
warning line and never loses a result.
"""

from __future__ import annotations

import netrc
import os
from pathlib import Path
from typing import Any


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
                        "cell_id": record["cell_id"], "protocol_version": record["protocol_version"]},
                settings=wandb.Settings(silent=True, console="off"),
                reinit="finish_previous",
            )
            values = {k: v for k, v in record["metrics"].items() if isinstance(v, (int, float))}
            run.log(values)
            run.summary.update(values)
            run.finish(quiet=True)
        except Exception as e:  # noqa: BLE001 - tracking must never cost a local result
            self.broken = True
            print(f"warning: W&B logging failed ({type(e).__name__}: {str(e)[:120]}); results.jsonl is complete, "
                  "set logger=none to skip W&B")

    def finish(self, output_dir: Path) -> None:
        pass


def make_logger(cfg: Any) -> NullLogger | WandbLogger:
    name = str(cfg.logger.name) if cfg.get("logger") else "none"
    if name in ("none", "None", "false", "False"):
        return NullLogger()
    if name != "wandb":
        from benchmark.errors import BenchmarkError

        raise BenchmarkError(f"unknown logger {name!r}; use logger.name=wandb or logger=none")
    return WandbLogger(cfg)
