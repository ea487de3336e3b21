"""Spawned DDP workers leave no process group (and none of its threads) behind; fit takes a logger."""

from __future__ import annotations

import copy
import csv
import os
import sys
import time

import pytest
import torch
import torch.distributed as dist
from lightning.pytorch.loggers import CSVLogger

from benchmark.module import METHODS
from benchmark.training import SpawnDDPStrategy, build_trainer, fit

GLOO_THREADS = {"pt_gloo_runloop", "gloo_tcp_loop"}


def _thread_names() -> set[str]:
    names = set()
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/comm") as f:
                names.add(f.read().strip())
        except FileNotFoundError:  # the thread ended while we listed
            continue
    return names


def _eventually(cond, timeout: float = 10.0) -> bool:
    """Polls ``cond`` (threads start and get their names asynchronously; under load that can lag)."""
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            return False
        time.sleep(0.02)
    return True


@pytest.mark.skipif(not sys.platform.startswith("linux") or not dist.is_available(),
                    reason="reads thread names from /proc; needs torch.distributed")
def test_spawn_worker_teardown_destroys_the_group_and_joins_its_threads(tmp_path):
    trainer = build_trainer({"accelerator": "cpu", "devices": 2}, max_epochs=1)
    assert isinstance(trainer.strategy, SpawnDDPStrategy)
    assert trainer.strategy._start_method == "spawn"
    # what a worker holds when its fit ends: a gloo group (one rank here, so no second process)
    store = dist.FileStore(str(tmp_path / "store"), 1)
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    try:
        dist.all_reduce(torch.ones(1))  # the group starts its worker threads on the first collective
        assert _eventually(lambda: GLOO_THREADS <= _thread_names()), _thread_names()
        trainer.strategy.teardown()
        assert not dist.is_initialized()
        # joined while the interpreter is whole, not left running into its finalization
        assert _eventually(lambda: not GLOO_THREADS & _thread_names()), _thread_names()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    trainer.strategy.teardown()  # the launching process has no group: a no-op


def test_fit_logs_to_the_given_logger_and_to_none_by_default(tmp_path, tiny_net, tiny_data):
    assert build_trainer({"accelerator": "cpu", "devices": 1}, max_epochs=1).logger is None
    logger = CSVLogger(save_dir=str(tmp_path), name="cell", version=0)
    module = METHODS.get("finetune")(copy.deepcopy(tiny_net), tiny_data, epochs=1, batch_size=32)
    fit(module, {"accelerator": "cpu", "devices": 1, "log_every_n_steps": 1}, logger=logger)
    assert module.trainer.logger is logger
    with open(tmp_path / "cell" / "version_0" / "metrics.csv") as f:
        losses = [float(r["unlearn/loss"]) for r in csv.DictReader(f) if r.get("unlearn/loss")]
    assert losses and all(torch.isfinite(torch.tensor(losses)))
