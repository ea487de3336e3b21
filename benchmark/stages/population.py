"""Stage 2b, population: forgetting quality against many originals and oracles (``eval.population.k``).

For one group (its fixed D_f), K originals are trained on D (seeds 0..K-1) and 2K oracles
on D_r (seeds 0..2K-1), all through the reference cache (reruns are free; member 0 of a
seed-0 group is the group's own theta_o and theta_r). A method is applied to each of the K
originals (member i with seed i); the K unlearned models' logit-scaled confidences on every
forget example (and on a fixed sample of D_r, for retain-side collateral) are compared with
those of the first K oracles by :mod:`benchmark.metrics.population`. The oracle's own line
is the held-out oracles K..2K-1 against the same K: a comparison of equal size, so a
method's score and the oracle's are read on the same scale (docs/protocol.md s.3).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Any

import lightning as L
import numpy as np
import torch

from benchmark.data import ImageData
from benchmark.errors import BenchmarkError, MethodRefusal
from benchmark.evaluate import non_finite, predict
from benchmark.metrics.population import epsilon_cap, logit_confidence, per_example_epsilon
from benchmark.module import METHODS
from benchmark.reference import get_reference
from benchmark.stages.plan import Cell
from benchmark.training import fit

SIDES = ("forget", "retain")
MIN_K = 4  # U-LiRA fits Gaussians on halves of at least two models


@dataclass
class Population:
    """The population of one group: the members' confidences and the originals to unlearn."""

    k: int
    indices: dict[str, np.ndarray]  # side -> training-set indices (D_f; a sample of D_r)
    originals: list[torch.nn.Module]
    original_conf: dict[str, np.ndarray]  # side -> [K, M]
    oracle_conf: dict[str, np.ndarray]  # the comparison oracles, seeds 0..K-1
    heldout_conf: dict[str, np.ndarray]  # the held-out oracles, seeds K..2K-1 (the oracle's own line)

    def pairs(self, unlearned: dict[str, np.ndarray]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """A metric context's ``population``: (unlearned, comparison oracles) per side."""
        return {side: (unlearned[side], self.oracle_conf[side]) for side in SIDES if len(self.indices[side])}


def population_size(cfg: Any) -> int:
    return int(((cfg.get("eval") or {}).get("population") or {}).get("k") or 0)


def confidences(net: torch.nn.Module, ds: ImageData, indices: dict[str, np.ndarray], tf: Any,
                device: torch.device, batch_size: int) -> dict[str, np.ndarray]:
    """Logit-scaled confidence of the true label, per side, of one model."""
    out = {}
    for side, idx in indices.items():
        t = torch.as_tensor(idx, dtype=torch.long)
        so = predict(net, ds.train_x[t], ds.train_y[t], tf, device, batch_size)
        out[side] = logit_confidence(so.logits.astype(np.float64), so.labels) if len(idx) else np.zeros(0)
    return out


def _stack(rows: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {side: np.stack([r[side] for r in rows]) for side in SIDES}


def prepare_population(cfg: Any, ds: ImageData, g: Any, device: torch.device,
                       known: dict[str, Any] | None = None) -> Population | None:
    """Trains (or loads) the group's K originals and 2K oracles and their confidences; None when off.
    ``known``: reference key -> a model trained elsewhere (``executor=ray``'s originals)."""
    k = population_size(cfg)
    if k == 0:
        return None
    if k < MIN_K:
        raise BenchmarkError(f"eval.population.k={k} is too small; use 0 (off) or at least {MIN_K}")
    if (cfg.get("reference") or {}).get("original") or (cfg.get("reference") or {}).get("oracle"):
        raise BenchmarkError("eval.population needs the suite to train its reference models; set "
                             "eval.population.k=0 when you bring reference.original/oracle checkpoints")
    t0 = time.perf_counter()
    pop_cfg = cfg.eval.population
    rng = np.random.default_rng([int(g.seed), 0x5EED])
    n_ret = min(int(pop_cfg.get("retain_sample", 256)), len(g.split.retain))
    indices = {"forget": np.asarray(g.split.forget),
               "retain": np.sort(rng.choice(np.asarray(g.split.retain), size=n_ret, replace=False))}
    bs, fresh = int(cfg.eval.batch_size), 0
    originals, conf = [], {"original": [], "oracle": []}
    for kind, n in (("original", k), ("oracle", 2 * k)):
        for seed in range(n):
            ref = get_reference(kind, cfg, ds, g.split, g.transform, seed, known)
            fresh += not ref.cached
            if kind == "original":
                originals.append(ref.net)
            conf[kind].append(confidences(ref.net, ds, indices, g.transform, device, bs))
    pop = Population(k, indices, originals, _stack(conf["original"]), _stack(conf["oracle"][:k]),
                     _stack(conf["oracle"][k:]))
    print(f"[population] K={k}: {k} originals and {2 * k} oracles ({fresh} trained, {3 * k - fresh} cached), "
          f"{len(indices['forget'])} forget and {n_ret} retain examples ({time.perf_counter() - t0:.1f} s)",
          flush=True)
    return pop


def unlearned_population(cfg: Any, ds: ImageData, g: Any, cell: Cell, device: torch.device,
                         timings: dict[str, Any]) -> dict[str, tuple[np.ndarray, np.ndarray]] | str:
    """The method of ``cell`` applied to each of the K originals; the (unlearned, oracle) confidences
    per side, or the reason there are none (a member's run failed or was refused)."""
    pop: Population = g.population
    if cell.method == "original":
        return pop.pairs(pop.original_conf)
    cls = METHODS.get(cell.method)
    if cls.uses_recipe:  # retrain: the held-out oracles are its population
        return pop.pairs(pop.heldout_conf)
    t0 = time.perf_counter()
    rows = []
    try:
        for i, net in enumerate(pop.originals):
            L.seed_everything(i, workers=True, verbose=False)
            module = cls(copy.deepcopy(net), g.unlearn_data(ds, i), **cell.hparams)
            fit(module, cfg.trainer, [], logger=None)
            member = module.net.cpu()
            why = non_finite(member, None)
            if why:
                return f"population member {i}: {why}"
            rows.append(confidences(member, ds, pop.indices, g.transform, device, int(cfg.eval.batch_size)))
    except MethodRefusal as e:
        return f"population member {len(rows)}: {e}"
    except Exception as e:  # noqa: BLE001 - the cell's own result stands; the population metrics say why not
        return f"population member {len(rows)} failed: {type(e).__name__}: {str(e)[:160]}"
    finally:
        timings["population_s"] = time.perf_counter() - t0
    stacked = _stack(rows)
    if not all(np.isfinite(v).all() for v in stacked.values()):
        return "a population member gives non-finite outputs"
    return pop.pairs(stacked)


def population_record(pairs: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, Any]:
    """Per-example epsilons per side (what the figures draw), with K and the estimator's cap."""
    out: dict[str, Any] = {}
    for side, (u, r) in pairs.items():
        try:
            out[f"{side}_eps"] = [round(float(v), 6) for v in per_example_epsilon(u, r)]
        except ValueError:
            continue
        out["k"], out["cap"] = int(len(u)), epsilon_cap(len(u), len(r))
    return out
