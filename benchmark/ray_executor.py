"""``executor=ray``: the run's grid as a graph of Ray tasks, on every CPU and GPU of a machine
or of a cluster (README "GPUs and clusters").

The tasks are the stages of ``benchmark/runner.py``, unchanged:

- one **original** task per seed (theta_o does not depend on the ratio, so every group of
  that seed shares it, and ``eval.population``'s originals are among them): no two groups
  ever train the same reference, which concurrent groups would otherwise race to do;
- one **references** task per batch of :func:`reference_batches` (one group, or every seed
  of a ratio when their oracles are each other's RMIA references): stage 2,
  :func:`prepare_groups`, given the originals;
- one **cell** task per method cell, depending on its group's references: stage 3,
  :func:`run_cell`, exactly as the local loop calls it (seeded alike, ``trainer.cpu_threads``
  set alike), so a cell's metrics do not depend on the executor.

Each task reserves ``executor.cpus_per_cell`` CPUs and ``executor.gpus_per_cell`` GPUs.
References and the decoded dataset travel as Ray objects (``executor.share=object``) or
through ``cache_dir`` on shared storage (``share=cache``). This process (the driver) keeps
the plan and hands each cell result, in the order cells finish, to the runner's sinks:
it is the one writer of ``results.jsonl``, the diagnostics, W&B runs and figures, so no
lock on shared storage is needed. A task whose worker dies (killed, out of memory, lost
node) is retried ``executor.max_retries`` times by Ray, then its cells are recorded as
failed with the cause and the sweep goes on; killing the driver loses at most the cells in
flight, and the same command resumes (the plan skips every recorded cell).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import signal
import threading
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch

from benchmark.config import import_user_modules, register_method_variants, set_search_path
from benchmark.data import ImageData, load_dataset
from benchmark.data.transforms import make_transform
from benchmark.diagnostics import write_rows
from benchmark.errors import BenchmarkError
from benchmark.io import signals_held
from benchmark.reference import Reference, checkpoint_path, get_reference
from benchmark.stages.cell import run_cell
from benchmark.stages.plan import Cell
from benchmark.stages.population import population_size
from benchmark.stages.references import (
    group_split,
    original_seeds,
    prepare_groups,
    reference_batches,
)
from benchmark.stages.result import CellResult
from benchmark.stages.sinks import diagnostics_path
from benchmark.training import eval_device, world_size

WAIT_S = 0.5  # the driver wakes this often (a signal is handled between waits)


# -- the tasks (run in Ray workers) -----------------------------------------------------------

_prepared: set[tuple] = set()


def _setup(cfg: Any) -> torch.device:
    """A worker as the local runner's process is: user modules and method variants registered,
    torch's CPU threads as ``trainer.cpu_threads`` (what ``make_plan`` sets there)."""
    key = (tuple(cfg.imports or []), tuple(cfg.config_path or []))
    if key not in _prepared:
        import_user_modules(list(key[0]))
        set_search_path(list(key[1]), list(key[0]))
        register_method_variants()
        _prepared.add(key)
    if cfg.trainer.get("cpu_threads"):
        torch.set_num_threads(int(cfg.trainer.cpu_threads))
    return eval_device(cfg.trainer)


def _data(cfg: Any, ds: ImageData | None) -> ImageData:
    """The dataset: the driver's object (share=object), or decoded from the shared cache_dir."""
    if ds is not None:
        return ds
    d = cfg.data
    return load_dataset(str(d.name), d.root, bool(d.download), cache_dir=str(Path(cfg.cache_dir)))


def original_task(cfg: Any, ds: ImageData | None, ratio: float | None, seed: int) -> Reference:
    """theta_o of ``seed`` (trained, or loaded from the cache); without its network under
    share=cache (the references task loads it from there)."""
    _setup(cfg)
    ds = _data(cfg, ds)
    ref = get_reference("original", cfg, ds, group_split(cfg, ds, ratio, seed), make_transform(cfg, ds), seed)
    print(f"[ref] original seed={seed} {'reused from cache' if ref.cached else 'trained'} ({ref.key})", flush=True)
    return ref if str(cfg.executor.share) == "object" else dataclasses.replace(ref, net=None)


def references_task(cfg: Any, ds: ImageData | None, ratio: float | None, seeds: list[int],
                    *originals: Reference) -> tuple:
    """Stage 2 for one batch: each seed's group (under share=cache only the keys of its models,
    which its cells load from cache_dir), then the batch's summary for the driver (what the
    records, the figures and the counts need)."""
    device = _setup(cfg)
    ds = _data(cfg, ds)
    known = {r.key: r for r in originals if r.net is not None}
    groups = prepare_groups(cfg, ds, ratio, seeds, device, known)
    info = {s: {"split_hash": g.split.sha256, "reference_keys": {"original": g.original.key, "oracle": g.oracle.key},
                "warnings": list(g.warnings), "ref_curves": g.ref_curves,
                "levels": g.attack.levels if g.attack else None,
                "trained": [r.key for r in (g.oracle,) if not r.cached and r.checkpoint is None]}
            for s, g in groups.items()}
    if str(cfg.executor.share) == "object":
        return (*[groups[s] for s in seeds], info)
    return (*[{"models": [g.original.key, g.oracle.key], "checkpoints": [r.key for r in (g.original, g.oracle)
                                                                          if r.checkpoint]}
              for g in groups.values()], info)


def cell_task(cfg: Any, ds: ImageData | None, g: Any, cell: Cell, seeds: list[int]) -> CellResult:
    """Stage 3, :func:`run_cell`; under share=cache the group is rebuilt from cache_dir (every
    model of it must be there: a worker never retrains a reference). The result comes back
    without the network and its outputs; the diagnostics come back in memory."""
    device = _setup(cfg)
    ds = _data(cfg, ds)
    planned = cell.identity["trainer"]["device"]
    if device.type != planned:
        return _failed(cfg, cell, f"this cell was planned for device {planned} (the driver's) but its Ray worker has "
                                  f"{device.type}; set trainer.accelerator to the workers' device (gpu or cpu)")
    if isinstance(g, dict):  # share=cache
        missing = [k for k in g["models"] if k not in g["checkpoints"]
                   and not (Path(cfg.cache_dir) / "models" / f"{k}.pt").is_file()]
        if missing:
            return _failed(cfg, cell, f"executor.share=cache, but cache_dir {cfg.cache_dir} on this worker lacks "
                                      f"{missing[0]}.pt; put cache_dir on storage every node shares, or use "
                                      "executor.share=object")
        g = prepare_groups(cfg, ds, cell.ratio, seeds, device)[cell.seed]
    else:  # its own writable copy (arrays from the object store are read-only views)
        g = copy.deepcopy(g)
    res = run_cell(cfg, ds, g, cell, device, None)
    res.net = res.outputs = None
    return res


def _failed(cfg: Any, cell: Cell, why: str, tb: str | None = None, info: dict | None = None) -> CellResult:
    """A cell's failed result, built where :func:`run_cell` could not build it."""
    res = CellResult(cell=cell, status="failed", world_size=world_size(cfg.trainer))
    batch = cell.hparams.get("batch_size")
    res.effective_batch = batch and res.world_size * int(batch)
    if info:
        res.split_hash, res.reference_keys = info["split_hash"], info["reference_keys"]
        res.warnings = list(info["warnings"])
    return res.fail(why, tb)


# -- the driver -------------------------------------------------------------------------------

def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise BenchmarkError("executor=ray needs Ray, which is not installed; pip install 'unlearn-bench[ray]' "
                             "(or pip install ray), or use executor=local") from None
    return ray


def connect(cfg: Any) -> bool:
    """Starts Ray here (``executor.address=null``) or joins a cluster; True if this call started
    or joined it (the run then shuts it down), False when the caller had already."""
    ray = _ray()
    if ray.is_initialized():
        return False
    ex = cfg.executor
    kw: dict[str, Any] = {"log_to_driver": True, "logging_level": logging.WARNING}
    main = threading.current_thread() is threading.main_thread()
    handler = signal.getsignal(signal.SIGTERM) if main else None
    try:
        if ex.get("address"):
            ray.init(address=str(ex.address), **kw)
        else:
            ray.init(num_cpus=ex.get("num_cpus"), include_dashboard=False, **kw)
    finally:
        if main and handler is not None:  # ray.init sets its own (sys.exit): the run's clean stop stays
            signal.signal(signal.SIGTERM, handler)
    return True


def _cause(e: BaseException, retries: int) -> tuple[str, str | None]:
    """A failed task's cause in one line (and the worker's traceback, for an exception raised there)."""
    ray = _ray()
    if isinstance(e, ray.exceptions.RayTaskError):
        inner = e.cause if isinstance(getattr(e, "cause", None), BaseException) else e
        if not isinstance(inner, ray.exceptions.RayError):  # raised by the task's own code
            lines = str(e).strip().splitlines()
            return f"{type(inner).__name__}: {str(inner).strip().splitlines()[0][:300] if str(inner).strip() else ''}", \
                "\n".join(lines[-12:])
        e = inner
    first = (str(e).strip().splitlines() or [""])[0][:300]
    return (f"its Ray task failed {retries + 1} time(s) (executor.max_retries={retries}): "
            f"{type(e).__name__}: {first}", None)


def _app_error(e: BaseException) -> BaseException | None:
    """The exception a task's own code raised (None for a system failure: a dead worker or node)."""
    ray = _ray()
    inner = getattr(e, "cause", None)
    if isinstance(e, ray.exceptions.RayTaskError) and isinstance(inner, BaseException) \
            and not isinstance(inner, ray.exceptions.RayError):
        return inner
    return None


def run_ray(runner: Any, sinks: list) -> None:
    """Runs ``runner.plan``'s cells as Ray tasks and writes each result through ``runner.write``."""
    cfg = runner.cfg
    if not runner.plan.todo:
        return  # everything is recorded: no cluster needed
    started = connect(cfg)
    pending: dict[Any, tuple] = {}
    try:
        _drive(runner, sinks, pending)
    finally:
        ray = _ray()
        for ref in list(pending):  # an interruption: nothing more runs for this driver
            try:
                ray.cancel(ref, force=True)
            except Exception:  # noqa: BLE001 - finished or already gone
                pass
        if started:
            ray.shutdown()


def _slots(ray: Any, cpus: float, gpus: float) -> int:
    """How many cells the cluster runs at once."""
    res = ray.cluster_resources()
    n = math.floor(res.get("CPU", 0) / cpus) if cpus else 10**6
    if gpus:
        n = min(n, math.floor(res.get("GPU", 0) / gpus))
    return max(1, n)


def _drive(runner: Any, sinks: list, pending: dict[Any, tuple]) -> None:
    ray = _ray()
    cfg, plan = runner.cfg, runner.plan
    ex = cfg.executor
    gpus = ex.get("gpus_per_cell")
    if gpus is None:
        gpus = 1 if ray.cluster_resources().get("GPU", 0) > 0 and str(cfg.trainer.accelerator) != "cpu" else 0
    cpus, retries = float(ex.cpus_per_cell), int(ex.max_retries)
    opts = {"num_cpus": cpus, "num_gpus": gpus, "max_retries": retries, "retry_exceptions": False}
    slots = _slots(ray, cpus, gpus)
    print(f"[ray] {ray.cluster_resources().get('CPU', 0):g} CPUs, {ray.cluster_resources().get('GPU', 0):g} GPUs: "
          f"up to {slots} cells at once ({cpus:g} CPU, {gpus:g} GPU each; share={ex.share}, "
          f"max_retries={retries})", flush=True)
    original = ray.remote(original_task).options(**opts)
    references = ray.remote(references_task)
    cell_fn = ray.remote(cell_task).options(**opts)
    cfg_ref = ray.put(cfg)
    ds_ref = ray.put(runner.ds) if str(ex.share) == "object" else None

    batches = reference_batches(cfg, plan.groups(), plan.seeds)
    origs: dict[int, Any] = {}
    if batches and checkpoint_path("original", cfg) is None:
        wanted = [(ratio, s) for ratio, seeds in batches for s in seeds]
        wanted += [(batches[0][0], s) for s in original_seeds(cfg, plan.seeds)]  # eval.population's originals
        for ratio, s in wanted:
            if s not in origs:  # one task per original, whichever groups share it
                origs[s] = original.remote(cfg_ref, ds_ref, ratio, s)
    for ref in origs.values():
        pending[ref] = ("original",)
    pop = list(range(population_size(cfg)))
    left: dict[tuple, int] = defaultdict(int)
    for ratio, seeds in batches:
        needed = [origs[s] for s in dict.fromkeys([*seeds, *pop]) if s in origs]
        outs = references.options(**opts, num_returns=len(seeds) + 1).remote(cfg_ref, ds_ref, ratio, seeds, *needed)
        pending[outs[-1]] = ("references", ratio, seeds)
        for s, g_ref in zip(seeds, outs[:-1], strict=True):
            for cell in (c for c in plan.todo if c.group == (ratio, s)):
                ref = cell_fn.remote(cfg_ref, ds_ref, g_ref, cell, seeds)
                pending[ref] = ("cell", cell)
                left[cell.group] += 1
    infos: dict[tuple, dict] = {}
    results: dict[tuple, list] = defaultdict(list)
    trained: dict[str, int] = defaultdict(int)
    while pending:
        # a signal never cuts into Ray's own calls: it is raised (Interrupted) at the end of a round
        with signals_held():
            _round(runner, sinks, pending, infos, results, trained, left, slots, retries)
    twice = [k for k, n in trained.items() if n > 1]
    print(f"[ray] {len(trained)} reference models trained" + (f"; trained twice: {twice}" if twice else ""),
          flush=True)


def _round(runner: Any, sinks: list, pending: dict[Any, tuple], infos: dict, results: dict, trained: dict,
           left: dict, slots: int, retries: int) -> None:
    """Waits up to WAIT_S for finished tasks and takes in each: counts, group summaries, cell results
    (written through the runner's sinks), a group's figure once its last cell is in."""
    ray = _ray()
    cfg, progress = runner.cfg, sinks[2]
    done, _ = ray.wait(list(pending), num_returns=1, timeout=WAIT_S)
    for ref in done:
        job = pending.pop(ref)
        if job[0] == "original":
            try:
                r = ray.get(ref)
                if not r.cached:
                    trained[r.key] += 1
            except Exception:  # noqa: BLE001 - its groups' cells report it
                pass
            continue
        if job[0] == "references":
            _, ratio, seeds = job
            try:
                info = ray.get(ref)
            except Exception as e:  # noqa: BLE001
                app = _app_error(e)
                if isinstance(app, BenchmarkError):  # a bad input: stop, as the local loop does
                    raise BenchmarkError(str(app)) from None
                continue  # a dead worker: each of its cells records the cause
            for s in seeds:
                infos[(ratio, s)] = info[s]
                for k in info[s]["trained"]:
                    trained[k] += 1
            continue
        cell = job[1]
        try:
            res = ray.get(ref)
        except Exception as e:  # noqa: BLE001 - a dead worker or node, after the retries
            app = _app_error(e)
            if isinstance(app, BenchmarkError):
                raise BenchmarkError(str(app)) from None
            why, tb = _cause(e, retries)
            res = _failed(cfg, cell, why, tb, infos.get(cell.group))
        if res.diagnostics:
            write_rows(diagnostics_path(runner.out, cell.cell_id), res.diagnostics)
        # cells whose references are ready, as many as the cluster holds (Ray does not say which run)
        progress.running = min(slots, sum(1 for j in pending.values() if j[0] == "cell" and j[1].group in infos))
        runner.write(sinks, res)
        results[cell.group].append(res)
        left[cell.group] -= 1
        info = infos.get(cell.group)
        if left[cell.group] == 0 and cfg.attack.enabled and info and info["levels"] is not None:
            runner.figure(cell.ratio, cell.seed, results.pop(cell.group), info["ref_curves"], info["levels"])
