"""Stage 3, cell: one method run on one group, to a typed :class:`CellResult`.

The method unlearns a copy of theta_o (timed; diagnostics logged through Lightning's
logger interface), the attack callback relearns a copy of the result, one inference
pass gives the outputs, with ``eval.population.k`` the method also unlearns each of the
group's K originals, and every registered metric is computed from them. Guards:
a model with a non-finite weight or output is ``failed`` with that reason, never
scored; a method's refusal (:class:`~benchmark.errors.MethodRefusal`, or a scenario
it does not support) is ``skipped``; any other error is ``failed``.
"""

from __future__ import annotations

import copy
import time
import traceback
from typing import Any

import lightning as L
import torch

from benchmark.callbacks.relearn import Curve
from benchmark.data import ImageData
from benchmark.diagnostics import DiagnosticsLogger
from benchmark.errors import MethodRefusal
from benchmark.evaluate import full_outputs, non_finite
from benchmark.metrics import METRICS, compute_metrics
from benchmark.models import trainable_state
from benchmark.module import METHODS
from benchmark.stages.plan import Cell
from benchmark.stages.population import population_record, unlearned_population
from benchmark.stages.references import Group, metric_context
from benchmark.stages.result import CellResult
from benchmark.training import fit, world_size


def run_cell(cfg: Any, ds: ImageData, g: Group, cell: Cell, device: torch.device, diagnostics_path: Any) -> CellResult:
    """Runs one cell; never raises (a failure is a result)."""
    res = CellResult(cell=cell, status="ok", split_hash=g.split.sha256, warnings=list(g.warnings),
                     reference_keys={"original": g.original.key, "oracle": g.oracle.key},
                     world_size=world_size(cfg.trainer))
    batch = cell.hparams.get("batch_size")
    res.effective_batch = batch and res.world_size * int(batch)
    if cell.skip_reason:
        return res.skip(cell.skip_reason)
    t_cell = time.perf_counter()
    try:
        curves, levels = _unlearn(cfg, ds, g, cell, device, diagnostics_path, res)
        why = non_finite(res.net, None)
        if why:
            return res.fail(why)
        t0 = time.perf_counter()
        full = full_outputs(res.net, ds, g.split, g.transform, device, int(cfg.eval.batch_size)) \
            if res.outputs is None else res.outputs
        res.timings["eval_s"] = time.perf_counter() - t0 if res.outputs is None else 0.0
        res.outputs = full
        why = non_finite(res.net, full)
        if why:
            return res.fail(why)
        res.timings["cell_s"] = time.perf_counter() - t_cell
        weights = {"model": trainable_state(res.net), "original": trainable_state(g.original.net),
                   "oracle": trainable_state(g.oracle.net)}
        population = unlearned_population(cfg, ds, g, cell, device, res.timings) if g.population else None
        ctx = metric_context(ds, cfg, g, full, oracle_values=g.oracle_metrics, weights=weights,
                             timings=res.timings, curves=curves or None,
                             oracle_curves=g.ref_curves.get("oracle"), levels=levels,
                             population=population if isinstance(population, dict) else None)
        res.metrics, res.undefined = compute_metrics(ctx)
        if isinstance(population, dict):
            res.population = population_record(population)
        if isinstance(population, str):  # every population metric is undefined, with the reason
            for key in (m.name for _, m in METRICS.items() if "population" in m.requires):
                res.metrics[key], res.undefined[key] = None, population
        res.curves, res.levels = curves, levels
        return res
    except MethodRefusal as e:  # the method declines this cell
        return res.skip(str(e))
    except Exception as e:  # noqa: BLE001 - one failing cell must not stop the sweep
        return res.fail(f"{type(e).__name__}: {e}", traceback.format_exc(limit=4))


def _unlearn(cfg: Any, ds: ImageData, g: Group, cell: Cell, device: torch.device, diagnostics_path: Any,
             res: CellResult) -> tuple[dict[str, list[Curve]], Any]:
    """Sets ``res.net`` (and the timings, diagnostics and, for the reference rows, outputs);
    returns the relearning curves and levels."""
    reference, curves = unlearn_phase(cfg, ds, g, cell, METHODS.get(cell.method), device, diagnostics_path, res)
    if reference is not None:  # the row is a reference model: its cached outputs
        res.outputs = g.original_outputs if reference == "original" else g.oracle_outputs
    return curves, g.attack.levels if g.attack else None


def unlearn_phase(cfg: Any, ds: ImageData, g: Any, cell: Cell, cls: type, device: torch.device,
                  diagnostics_path: Any, res: CellResult) -> tuple[str | None, dict[str, list[Curve]]]:
    """The unlearning phase of a cell, for classifiers and generators alike: sets ``res.net``, the
    timings and the diagnostics, and returns (the reference the row is, or None; its relearning
    curves). ``original`` is theta_o itself and a recipe method (retrain) the cached oracle, with
    their cached curves; any other method is fitted from a copy of theta_o under Lightning, with
    the group's attack as a callback. ``g`` holds ``original``, ``oracle``, ``attack``,
    ``ref_curves`` and ``unlearn_data(ds, seed)``."""
    oracle_s = g.oracle.train_seconds
    res.timings.update({"oracle_train_s": oracle_s, "attack_s": None})
    reference = "original" if cell.method == "original" else "oracle" if cls.uses_recipe else None
    if reference is not None:
        res.net = g.original.net if reference == "original" else g.oracle.net
        res.timings["unlearn_s"] = 0.0 if reference == "original" else oracle_s
        curves = g.ref_curves.get(reference, {})
    else:
        L.seed_everything(cell.seed, workers=True, verbose=False)
        module = cls(copy.deepcopy(g.original.net), g.unlearn_data(ds, cell.seed), **cell.hparams)
        callbacks = [g.attack.callback()] if g.attack else []
        logger = DiagnosticsLogger(diagnostics_path)
        res.timings["unlearn_s"] = fit(module, cfg.trainer, callbacks, logger=logger)
        res.diagnostics = logger.read()
        res.net = module.net.cpu()
        if callbacks and not callbacks[0].curves and non_finite(res.net, None) is None:
            callbacks[0].run(res.net, device)  # ddp_spawn: the callback ran in a worker
        curves = callbacks[0].curves if callbacks else {}
    if curves:
        res.timings["attack_s"] = sum(c.seconds for runs in curves.values() for c in runs)
    return reference, curves
