"""Stage 1, plan: the cells of one dataset's grid, their identities, and what is done.

Everything a run can reject is rejected here, before any data loads: unknown
methods and hyperparameters, ratios and seeds, the model, the attackers, an output
directory that cannot be written.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import torch

from benchmark import hparams
from benchmark.config import attacker_config, to_dict
from benchmark.data.splits import check_ratio
from benchmark.errors import BenchmarkError
from benchmark.generative.methods import method_registry
from benchmark.identity import cell_keys, code_fingerprint, file_digest
from benchmark.models import MODELS
from benchmark.schema import check_config
from benchmark.training import eval_device, world_size
from benchmark.tuned import tuned_layers
from benchmark.version import PROTOCOL_VERSION

REFERENCE_ROWS = ("original", "retrain")


@dataclass(frozen=True)
class Cell:
    """One method on one group (dataset, scenario, ratio, seed), with its identity."""

    method: str
    ratio: float | None
    seed: int
    hparams: dict[str, Any]
    variant: str
    identity: dict[str, Any]
    keys: dict[str, str]  # config_id, cell_id, row_key, table_key
    code: dict[str, Any]
    skip_reason: str | None = None  # the method refuses this scenario (listed explicitly)
    hparams_source: str = "defaults"  # "tuned": a tuned file's values are a layer of hparams
    tuned: dict[str, Any] | None = None  # the tuned file, its sha256, the setting and study

    @property
    def cell_id(self) -> str:
        return self.keys["cell_id"]

    @property
    def group(self) -> tuple[float | None, int]:
        return self.ratio, self.seed


@dataclass
class Plan:
    """The cells of this shard, and which of them still need running."""

    cfg: Any
    methods: list[str]
    ratios: list[float | None]
    seeds: list[int]
    cells: list[Cell]
    todo: list[Cell]
    stale: list[Cell] = field(default_factory=list)  # done under other code: rerun

    def groups(self) -> list[tuple[float | None, int]]:
        """The (ratio, seed) groups with work to do, in grid order."""
        seen: dict[tuple, None] = {}
        for c in self.todo:
            seen.setdefault(c.group)
        return list(seen)


def parse_shard(spec: Any) -> tuple[int, int] | None:
    """``"i/n"`` -> (i, n) with 0 <= i < n; None for no sharding (``null``). An empty value
    (``--shard`` with nothing after it) is an error, never "no sharding"."""
    if spec is None or spec == "None":
        return None
    if not str(spec).strip():
        raise BenchmarkError("shard is empty (--shard with no value?); give a slice i/n, e.g. shard=0/4, "
                             "or leave it out to run the whole grid")
    try:
        i, n = (int(x) for x in str(spec).split("/"))
    except ValueError:
        raise BenchmarkError(f"shard={spec!r} is not of the form i/n, e.g. shard=0/4") from None
    if n < 1 or not 0 <= i < n:
        raise BenchmarkError(f"shard={spec} is out of range: i must be in 0..n-1, e.g. shard=0/{max(n, 1)}")
    return i, n


def in_shard(shard: tuple[int, int] | None, *group: Any) -> bool:
    """Whether a group (dataset, scenario, ratio, seed) belongs to this shard: a hash of the
    group, so every shard gets whole groups (references are never trained twice)."""
    if shard is None:
        return True
    h = int(hashlib.sha256(json.dumps([str(g) for g in group]).encode()).hexdigest()[:12], 16)
    return h % shard[1] == shard[0]


def resolve_methods(cfg: Any) -> tuple[list[str], dict[str, str]]:
    """The methods to run, reference rows first, and the explicitly listed ones that do not
    support the scenario (-> skipped, with the reason). ``all`` means all that support it,
    except the sanity battery's cheats (``sanity = True``), which run only when listed."""
    spec = cfg.methods
    METHODS = method_registry(cfg)  # noqa: N806 - the task's methods (generators with task=generate)
    if spec in ("all", None):
        names = [m for m in METHODS.names() if not METHODS.get(m).sanity]
    else:
        names = [str(m) for m in spec]
    if not names:
        raise BenchmarkError("methods is empty; name at least one, e.g. methods=[finetune]")
    for n in names:
        METHODS.get(n)  # did-you-mean on a typo
    scenario = str(cfg.forget.scenario)
    unfit = {m: f"{m} supports forget.scenario in {list(METHODS.get(m).scenarios)}, not {scenario!r}"
             for m in names if METHODS.get(m).scenarios and scenario not in METHODS.get(m).scenarios}
    if spec in ("all", None):
        if unfit:
            print(f"[bench] not for forget.scenario={scenario}: {', '.join(unfit)}", flush=True)
        names, unfit = [m for m in names if m not in unfit], {}
    ordered = [m for m in REFERENCE_ROWS if m in names] + [m for m in names if m not in REFERENCE_ROWS]
    return list(dict.fromkeys(ordered)), unfit


def _ratios(cfg: Any) -> list[float | None]:
    """The forget ratios of the grid ([None] where the scenario has none). Duplicates are an
    error (``benchmark.schema``), never silently merged."""
    scenario = str(cfg.forget.scenario)
    if scenario in ("random", "subclass") or (scenario == "class" and not cfg.forget.classes):
        ratios = [check_ratio(r) for r in cfg.forget.ratios]
        if not ratios:
            raise BenchmarkError("forget.ratios is empty; give at least one, e.g. forget.ratios=[0.1]")
        if len(set(ratios)) != len(ratios):
            raise BenchmarkError(f"forget.ratios={list(ratios)} lists a ratio twice; list each once")
        return ratios
    return [None]


def attack_identity(cfg: Any) -> dict[str, Any] | None:
    """The attack settings that change a curve (None when the attack is off)."""
    if not cfg.attack.enabled:
        return None
    return {**to_dict(cfg.attack), "attacker_args": None,
            "attackers": {a: attacker_config(str(a), cfg) for a in cfg.attack.attackers}}


def cell_identity(cfg: Any, method: str, ratio: float | None, seed: int, hp: dict[str, Any]) -> dict[str, Any]:
    """Everything that determines a cell's numbers, except the code (see ``benchmark.identity``)."""
    cls, f = method_registry(cfg).get(method), cfg.forget
    # num_classes is a fact about the data (declared for the up-front checks), not a setting
    data = {k: v for k, v in to_dict(cfg.data).items() if k not in ("root", "download", "num_classes")}
    refs = cfg.get("reference") or {}
    return {
        "protocol_version": PROTOCOL_VERSION,
        "method": method, "method_class": f"{cls.__module__}.{cls.__qualname__}", "hparams": hp,
        "dataset": str(cfg.dataset), "model": str(cfg.model), "data": data,
        "forget": {"scenario": str(f.scenario), "ratio": ratio, "classes": to_dict(f)["classes"],
                   "seed": f.seed, "indices_file": file_digest(f.indices_file),
                   "retain_file": file_digest(f.get("retain_file"))},
        "seed": seed,
        "reference": {k: file_digest(refs.get(k)) for k in ("original", "oracle")},
        "attack": attack_identity(cfg),
        "eval": to_dict(cfg.eval),
        "trainer": {"devices": world_size(cfg.trainer), "precision": str(cfg.trainer.precision),
                    "device": eval_device(cfg.trainer).type},
        **generate_identity(cfg),
    }


def generate_identity(cfg: Any) -> dict[str, Any]:
    """``task=generate``: the task and the sampler/scoring settings (they change every number);
    nothing for classifiers, so their identities are those of before."""
    if str(cfg.get("task", "classify")) != "generate":
        return {}
    return {"task": "generate", "generate": to_dict(cfg.generate)}


def check_plan(cfg: Any) -> tuple[list[str], list[float | None], list[int], tuple[int, int] | None, dict[str, str]]:
    """Everything the plan rejects, without building cells: the schema (every value,
    ``benchmark.schema``), the methods and their hyperparameters, the model, the attackers,
    ratios, seeds and the shard. Loads no data, writes nothing.

    Returns:
        (methods, ratios, seeds, shard, methods that refuse the scenario -> why)
    """
    check_config(cfg)
    methods, unfit = resolve_methods(cfg)
    hparams.validate(cfg, methods)
    MODELS.get(str(cfg.model))
    for a in cfg.attack.attackers if cfg.attack.enabled else []:
        attacker_config(str(a), cfg)
    ratios = _ratios(cfg)
    seeds = [int(s) for s in cfg.seeds]
    if not seeds:
        raise BenchmarkError("seeds is empty; give at least one, e.g. seeds=[0]")
    tuned_layers(cfg, methods, ratios, seeds)  # tuned=...: the file and every entry the run needs
    return methods, ratios, seeds, parse_shard(cfg.get("shard")), unfit


def make_plan(cfg: Any, done: dict[str, dict[str, Any]]) -> Plan:
    """Builds the plan of one composed config.

    Args:
        done: config_id -> the newest record of that configuration already in results.jsonl.
    """
    methods, ratios, seeds, shard, unfit = check_plan(cfg)
    if cfg.trainer.get("cpu_threads"):
        torch.set_num_threads(int(cfg.trainer.cpu_threads))
    keep = ("ok",) if cfg.get("retry_failed") else ("ok", "failed", "skipped")
    cells, todo, stale = [], [], []
    tuned = tuned_layers(cfg, methods, ratios, seeds)
    for m in methods:
        code = code_fingerprint(method_registry(cfg).get(m))
        for ratio in ratios:
            t = tuned.get((m, ratio))
            hp = hparams.resolve(m, cfg, tuned=t.params if t else None)
            # a tuned row's label names only what differs from its tuned values ("finetune [tuned]")
            variant = hparams.variant_label(hp, hparams.declared(m, cfg, tuned=t.params if t else None))
            for seed in seeds:
                if not in_shard(shard, cfg.dataset, cfg.forget.scenario, ratio, seed):
                    continue
                ident = cell_identity(cfg, m, ratio, seed, hp)
                if t:  # never pooled with a default row, even where the values coincide
                    ident["hparams_source"] = "tuned"
                keys = cell_keys(ident, code["fingerprint"])
                cell = Cell(m, ratio, seed, hp, variant, ident, keys, code, unfit.get(m),
                            "tuned" if t else "defaults", t.source if t else None)
                cells.append(cell)
                prev = done.get(keys["config_id"])
                if prev is not None and prev.get("cell_id") == keys["cell_id"] and prev.get("status") in keep:
                    continue
                if prev is not None and prev.get("cell_id") != keys["cell_id"]:
                    stale.append(cell)
                todo.append(cell)
    order = {m: i for i, m in enumerate(methods)}
    todo.sort(key=lambda c: (ratios.index(c.ratio), seeds.index(c.seed), order[c.method]))
    return Plan(cfg, methods, ratios, seeds, cells, todo, stale)
