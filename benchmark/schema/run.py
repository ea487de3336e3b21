"""The run configuration's keys (``SCHEMA``), the rules across keys, sweep files, and
:func:`check_run` (everything, without running)."""

from __future__ import annotations

import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig

from benchmark.errors import BenchmarkError
from benchmark.schema.methods import _check_attack_values, check_method_values
from benchmark.schema.rules import (
    ACCELERATORS,
    PRECISIONS,
    RELEARN_SETS,
    SCENARIOS,
    SEED_MAX,
    Rule,
    _is_int,
    _plain,
    _show,
    boolean,
    check_dir_writable,
    devices,
    fail,
    integer,
    listed,
    mapping,
    nonempty_path,
    number,
    shard,
    string,
)

SCHEMA: dict[str, Rule] = {
    "dataset": string(eg="digits"),
    "task": string(("classify", "generate")),
    "generate.sample_steps": integer(1, 1000, eg="10"),
    "generate.guidance": number(0, 100, eg="2.0"),
    "generate.samples_per_class": integer(2, eg="50"),
    "generate.attack_samples": integer(1, eg="50"),
    "generate.grid_per_class": integer(1, 64, eg="8"),
    "generate.features": string(("evaluator", "inception")),
    "data.diffusion.timesteps": integer(2, 100000, eg="200"),
    "data.diffusion.p_uncond": number(0, 1, hi_open=True, eg="0.1"),
    "data.evaluator.model": string(eg="digits_cnn"),
    "data.evaluator.seed": integer(0, SEED_MAX, eg="0"),
    "model": string(null=True, eg="cnn32"),
    "preset": string(null=True, eg="cifar10_cpu"),
    "method_args": mapping(),
    "method_defaults": mapping(),
    "imports": listed(string(eg="my_pkg.mod"), nonempty=False, eg="[my_pkg.mod]"),
    "config_path": listed(string(eg="configs"), nonempty=False, eg="[mylab/configs]"),
    "forget.scenario": string(SCENARIOS),
    "forget.ratios": listed(number(0, 1, lo_open=True, hi_open=True), eg="[0.1]"),
    "forget.classes": listed(integer(0, eg="3"), null=True, eg="[3]"),
    "forget.indices_file": string(null=True, eg="forget.npy"),
    "forget.retain_file": string(null=True, eg="retain.npy"),
    "forget.seed": integer(0, SEED_MAX, null=True, eg="0"),
    "reference.original": string(null=True, eg="original.pt"),
    "reference.oracle": string(null=True, eg="oracle.pt"),
    "seeds": listed(integer(0, SEED_MAX, eg="0"), eg="[0]"),
    "sweep": string(null=True, eg="digits"),
    "shard": shard,
    "retry_failed": boolean(),
    "executor.name": string(("local", "ray"), eg="ray"),
    "executor.address": string(null=True, eg="auto"),
    "executor.num_cpus": integer(1, null=True, eg="2"),
    "executor.cpus_per_cell": number(0, lo_open=True, eg="1"),
    "executor.gpus_per_cell": number(0, null=True, eg="0.25"),
    "executor.max_retries": integer(0, 100, eg="2"),
    "executor.share": string(("object", "cache"), eg="object"),
    "output_dir": nonempty_path,
    "cache_dir": nonempty_path,
    "trainer.accelerator": string(ACCELERATORS),
    "trainer.devices": devices,
    "trainer.precision": string(PRECISIONS, eg="32-true"),
    "trainer.strategy": string(eg="auto"),
    "trainer.log_every_n_steps": integer(1, eg="25"),
    "trainer.cpu_threads": integer(1, null=True, eg="1"),
    "trainer.channels_last": boolean(),
    "trainer.compile": boolean(),
    "attack.stop_after_tail": integer(0, null=True, eg="10"),
    "attack.enabled": boolean(),
    "attack.attackers": listed(string(eg="sgd"), eg="[sgd,adam]"),
    "attack.attacker_args": mapping(),
    "attack.relearn_set": string(RELEARN_SETS),
    "attack.fraction": number(0, 1, lo_open=True, eg="0.5"),
    "attack.epochs": integer(1, eg="10"),
    "attack.max_steps": integer(1, null=True, eg="200"),
    "attack.eval_every": integer(1, null=True, eg="2"),
    "attack.delta": number(0, 1, lo_open=True, hi_open=True, eg="0.05"),
    "eval.population.k": integer(0, 4096, eg="16"),
    "eval.population.retain_sample": integer(0, eg="256"),
    "attack.delta_acc": number(0, 1, lo_open=True, hi_open=True, eg="0.05"),
    "attack.repeats": integer(1, 100, eg="3"),
    "attack.budget": string(("oracle", "fixed")),
    "attack.budget_factor": number(0, 1000, lo_open=True, eg="5"),
    "attack.cap_epochs": integer(1, eg="100"),
    "attack.seed": integer(0, SEED_MAX, eg="0"),
    "eval.batch_size": integer(1, eg="1024"),
    "eval.mia_shadow_max": integer(1, eg="10000"),
    "logger.name": string(("wandb", "none", None, False)),
    "logger.project": string(eg="unlearn-bench"),
    "logger.mode": string(("auto", "offline", "online", "disabled")),
    "logger.dir": string(eg="PATH"),
    "tuned": lambda key, v: None if isinstance(v, bool) else string(eg="true")(key, v),  # auto, or a file
    "tune.trials": integer(1, 100000, eg="20"),
    "tune.forget_seeds": listed(integer(0, SEED_MAX, eg="1000"), eg="[1000,1001]"),
    "tune.objective": string(("avg_gap", "oracle_free", "avg_gap_rcd")),
    "tune.val_tolerance": number(0, 100, eg="5"),
    "tune.gap_tolerance": number(0, 100, eg="1"),
    "tune.storage": string(null=True, eg="sqlite:///tune.db"),
    "tune.sampler_seed": integer(0, SEED_MAX, eg="0"),
    "tune.methods": listed(string(eg="finetune"), null=True, eg="[finetune,ssd]"),
    "tune.file": string(null=True, eg="configs/tuned/mine.yaml"),
    "data.name": string(eg="digits"),
    "data.root": string(null=True, eg="data/cifar10"),
    "data.download": boolean(),
    "data.model": string(eg="cnn32"),
    "data.num_classes": integer(2, null=True, eg="10"),
    "data.train_subset": integer(1, null=True, eg="300"),
    "data.split_seed": integer(0, SEED_MAX, eg="0"),
    "data.val_fraction": number(0, 1, hi_open=True, eg="0.1"),
    "data.augment.crop_pad": integer(0, eg="4"),
    "data.augment.flip": boolean(),
    "data.normalize.mean": listed(number(eg="0.5"), null=True, eg="[0.5,0.5,0.5]"),
    "data.normalize.std": listed(number(0, lo_open=True, eg="0.25"), null=True, eg="[0.25,0.25,0.25]"),
}


def _get(cfg: Any, key: str) -> tuple[bool, Any]:
    node = cfg
    for part in key.split("."):
        if not isinstance(node, (DictConfig, dict)) or part not in node:
            return False, None
        node = node[part]
    return True, node


# -- the checks -------------------------------------------------------------------------------

def check_config(cfg: DictConfig) -> None:
    """Every value of a merged run configuration; raises one ``BenchmarkError`` line.

    Reads no data and writes nothing: types and ranges of every key, the rules across keys
    (scenario, classes and ratios; sizes), the registries (methods, model, attackers), method
    hyperparameter keys and values, and whether ``output_dir``/``cache_dir`` can be written.
    """
    for key, rule in SCHEMA.items():
        present, value = _get(cfg, key)
        if present:
            rule(key, value)
    _check_methods_spec(cfg.get("methods"))
    _check_forget(cfg)
    _check_registries(cfg)
    check_method_values(cfg)
    _check_attack_values(cfg)
    k = (((cfg.get("eval") or {}).get("population")) or {}).get("k")
    if _is_int(k) and 0 < k < 4:
        fail("eval.population.k", k, "is too small (U-LiRA fits Gaussians on halves of at least 2 models)",
             "use eval.population.k=0 (off) or at least 4")
    if _is_int(k) and k and any((cfg.get("reference") or {}).get(r) for r in ("original", "oracle")):
        fail("eval.population.k", k, "needs reference models the suite trains itself",
             "set eval.population.k=0 when you bring reference.original/oracle checkpoints")
    for key in ("original", "oracle"):
        p = (cfg.get("reference") or {}).get(key)
        if p and not Path(str(p)).expanduser().is_file():
            fail(f"reference.{key}", p, "does not exist",
                 f"pass a state_dict checkpoint, or reference.{key}=null to train it with the recipe")
    for key in ("output_dir", "cache_dir"):
        check_dir_writable(key, str(cfg.get(key)))
    _check_executor(cfg)


def executor_name(cfg: Any) -> str:
    """``executor.name``: local (the default, also when the key is absent) or ray."""
    return str((cfg.get("executor") or {}).get("name") or "local")


def _check_executor(cfg: Any) -> None:
    """``executor=ray``: Ray is installed, and each cell is one process on at most one GPU."""
    if executor_name(cfg) != "ray":
        return
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        raise BenchmarkError("executor=ray needs Ray, which is not installed; pip install 'unlearn-bench[ray]' "
                             "(or pip install ray), or use executor=local")
    ex = cfg.executor
    ws = cfg.trainer.get("devices", 1)
    if not (_is_int(ws) and ws == 1) and not (isinstance(ws, (list, ListConfig)) and len(ws) == 1):
        fail("trainer.devices", _plain(ws), "splits one cell across devices (DDP), but executor=ray runs one "
             "cell per task", "use trainer.devices=1 with executor=ray (executor.gpus_per_cell sizes each task), "
             "or executor=local for DDP")
    gpus = ex.get("gpus_per_cell")
    if gpus is not None and gpus > 1:
        fail("executor.gpus_per_cell", gpus, "gives one cell several GPUs, but a cell runs in one process on "
             "one device", "use executor.gpus_per_cell=1 (or a fraction, e.g. 0.5), and executor=local with "
             "trainer.devices=N for DDP")
    if gpus and str(cfg.trainer.accelerator) == "cpu":
        fail("executor.gpus_per_cell", gpus, "reserves GPUs for cells that train on the CPU "
             "(trainer.accelerator=cpu)", "use executor.gpus_per_cell=0, or trainer.accelerator=auto")
    if ex.get("address") and ex.get("num_cpus"):
        fail("executor.num_cpus", ex.num_cpus, "sizes a Ray instance started here, but executor.address joins "
             "a running cluster", "unset one of them (executor.num_cpus=null)")


def _check_methods_spec(v: Any) -> None:
    if v == "all":
        return
    if isinstance(v, str):
        fail("methods", v, "is not a list", f"write it in brackets, e.g. methods=[{v}], or methods=all")
    if not isinstance(v, (list, ListConfig)):
        fail("methods", v, "is neither `all` nor a list of method names", "use methods=all or e.g. methods=[finetune]")
    listed(string(eg="finetune"), eg="[finetune]")("methods", v)


def num_classes(cfg: Any) -> int | None:
    """The dataset's number of classes as its config declares it (``data.num_classes``);
    None when only the data can tell (``imagefolder``)."""
    n = cfg.data.get("num_classes") if cfg.get("data") is not None else None
    return int(n) if _is_int(n) else None


def check_loaded(cfg: Any, loaded_classes: int) -> None:
    """The checks only the loaded data can settle: a declared ``data.num_classes`` matches, and
    the forgotten classes exist (``imagefolder`` declares none up front)."""
    declared = num_classes(cfg)
    if declared is not None and declared != loaded_classes:
        fail("data.num_classes", declared, f"does not match the data, which has {loaded_classes} classes",
             f"set data.num_classes={loaded_classes}")
    for c in cfg.forget.classes or []:
        if not 0 <= int(c) < loaded_classes:
            fail("forget.classes", _plain(cfg.forget.classes), f"holds {c}, but the data has classes "
                 f"0..{loaded_classes - 1}", f"use classes in 0..{loaded_classes - 1}")


def train_size(cfg: Any) -> int | None:
    """|D| (the training set minus D_val) when the config fixes it (``data.train_subset``)."""
    n = cfg.data.get("train_subset")
    if not _is_int(n):
        return None
    vf = float(cfg.data.get("val_fraction", 0.1) or 0)
    return n - (max(1, round(vf * n)) if vf > 0 else 0)


def _check_forget(cfg: Any) -> None:
    f, scenario = cfg.forget, str(cfg.forget.scenario)
    k = num_classes(cfg)
    classes = _plain(f.get("classes"))
    ratios = list(_plain(f.ratios))
    # the training set: at least one example per class (stratified), one to forget and one to keep
    n = train_size(cfg)
    if n is not None and n < max(2, k or 2):
        need = max(2, k or 2)
        s = next(s for s in range(need, 10 * need + 10) if train_size_of(s, cfg) >= need)
        fail("data.train_subset", cfg.data.train_subset,
             f"leaves {n} training examples after D_val; at least {need} are needed", f"use e.g. data.train_subset={s} or more")
    if classes is not None and scenario in ("random", "indices"):
        fail("forget.classes", classes, f"is not read with forget.scenario={scenario}",
             "unset it (forget.classes=null) or use forget.scenario=class or subclass")
    if classes is not None:
        if not classes:
            fail("forget.classes", classes, "is empty",
                 "name the classes, e.g. forget.classes=[3], or forget.classes=null to draw them by forget.ratios")
        if k is not None and any(c >= k for c in classes):
            bad = next(c for c in classes if c >= k)
            fail("forget.classes", classes, f"names class {bad}, but dataset {cfg.dataset} has classes 0..{k - 1}",
                 f"use classes in 0..{k - 1}, e.g. forget.classes=[{min(3, k - 1)}]")
        if scenario == "subclass" and len(classes) != 1:
            fail("forget.classes", classes, "names more than one class, but forget.scenario=subclass thins exactly one",
                 f"name one class, e.g. forget.classes=[{classes[0]}]")
        if scenario == "class" and k is not None and len(classes) >= k:
            fail("forget.classes", classes, "covers every class; nothing would be retained",
                 f"leave at least one class out, e.g. forget.classes=[{classes[0]}]")
    if scenario == "class" and classes is None and k is not None:
        for r in ratios:
            if max(1, round(r * k)) >= k:
                fail("forget.ratios", ratios, f"forgets all {k} classes at ratio {r} (nothing retained)",
                     f"use a ratio below {(k - 0.5) / k:.3g}, e.g. forget.ratios=[0.1]")
    if scenario == "random" and n is not None:
        for r in ratios:
            if max(1, round(r * n)) >= n:
                fail("forget.ratios", ratios, f"forgets all {n} examples of D at ratio {r} (nothing retained)",
                     f"use a ratio below {(n - 0.5) / n:.4g}, e.g. forget.ratios=[0.1]")
    if scenario == "indices":
        if not f.get("indices_file"):
            fail("forget.indices_file", f.get("indices_file"), "is not set, but forget.scenario=indices reads it",
                 "pass forget.indices_file=PATH (.npy, .json or .txt of training-set indices)")
        for key in ("indices_file", "retain_file"):
            p = f.get(key)
            if p and not Path(str(p)).expanduser().is_file():
                fail(f"forget.{key}", p, "does not exist", f"pass an existing file, forget.{key}=PATH")
    elif f.get("retain_file"):
        fail("forget.retain_file", f.retain_file, f"is only read with forget.scenario=indices (not {scenario})",
             "unset it (forget.retain_file=null) or use forget.scenario=indices with forget.indices_file")


def train_size_of(subset: int, cfg: Any) -> int:
    vf = float(cfg.data.get("val_fraction", 0.1) or 0)
    return subset - (max(1, round(vf * subset)) if vf > 0 else 0)


def _check_registries(cfg: Any) -> None:
    from benchmark.callbacks.relearn import ATTACKERS
    from benchmark.generative.methods import check_generative_method, method_registry
    from benchmark.models import MODELS, model_task

    registry = method_registry(cfg)
    task = str(cfg.get("task", "classify"))
    if cfg.methods != "all":
        for m in cfg.methods:
            if task == "generate":
                check_generative_method(str(m))
            registry.get(str(m))
    if cfg.get("model") is not None:
        MODELS.get(str(cfg.model))
        if model_task(str(cfg.model)) != task:
            want = "a generator, e.g. model=digits_unet" if task == "generate" else "a classifier, e.g. model=digits_mlp"
            fail("model", str(cfg.model), f"is a {'generator' if task == 'classify' else 'classifier'} "
                 f"but task={task}", f"use {want}, or task={model_task(str(cfg.model))}")
    if task == "generate":
        ev = cfg.data.get("evaluator")
        if ev is None or cfg.data.get("diffusion") is None:
            fail("task", task, f"needs data.diffusion and data.evaluator (configs/generate/{cfg.dataset}.yaml)",
                 "add them to that file")
        MODELS.get(str(ev.model))
        if model_task(str(ev.model)) != "classify":
            fail("data.evaluator.model", str(ev.model), "is not a classifier", "use e.g. digits_cnn")
        if str(cfg.forget.scenario) != "class":
            fail("forget.scenario", str(cfg.forget.scenario), "is not supported with task=generate (samples are "
                 "scored per class)", "use forget.scenario=class forget.classes=[3]")
        if cfg.get("tuned") and cfg.get("tuned") != "auto":  # auto finds no generative file: defaults
            fail("tuned", cfg.tuned, "is not supported with task=generate (no tuned generative files yet)",
                 "use tuned=false")
        if executor_name(cfg) == "ray":
            fail("executor.name", "ray", "does not run task=generate yet", "use executor=local (the default)")
        if int((((cfg.get("eval") or {}).get("population")) or {}).get("k") or 0):
            fail("eval.population.k", cfg.eval.population.k, "is not supported with task=generate",
                 "use eval.population.k=0")
        if any((cfg.get("reference") or {}).get(r) for r in ("original", "oracle")):
            fail("reference", "checkpoint", "is not supported with task=generate yet",
                 "use reference.original=null reference.oracle=null")
        if str(cfg.attack.relearn_set) != "forget":
            fail("attack.relearn_set", str(cfg.attack.relearn_set), "is not supported with task=generate",
                 "use attack.relearn_set=forget")
    if cfg.attack.enabled:
        for a in cfg.attack.attackers:
            ATTACKERS.get(str(a))


# -- sweep files -------------------------------------------------------------------------------

SWEEP_SCENARIO_KEYS = ("scenario", "ratios", "classes")


def check_sweep(sw: Mapping[str, Any], name: str) -> None:
    """A sweep file's own keys: ``datasets`` (list of names), ``scenarios`` (list of mappings
    with ``scenario`` and ``ratios`` or ``classes``), ``seeds`` (list), ``methods`` (list or
    ``all``), and the shared ``imports``, ``config_path``, ``method_args``, ``method_defaults``."""
    where = f"sweep {name!r}"

    def sfail(key: str, v: Any, what: str, fix: str) -> typing.NoReturn:
        raise BenchmarkError(f"{where}: {key}: {_show(v)} {what}; {fix}")

    def sub(key: str, rule: Rule, v: Any) -> None:
        try:
            rule(key, v)
        except BenchmarkError as e:
            raise BenchmarkError(f"{where}: {str(e).replace(key + '=', key + ': ', 1)}") from None

    for key, eg in (("datasets", "[digits]"), ("scenarios", "[{scenario: random, ratios: [0.1]}]"),
                    ("seeds", "[0, 1, 2]")):
        v = sw.get(key)
        if not isinstance(v, list) or not v:
            raise BenchmarkError(f"{where}: `{key}` must be a non-empty list, e.g. {key}: {eg}")
    sub("datasets", listed(string(eg="digits"), eg="[digits]"), sw["datasets"])
    sub("seeds", SCHEMA["seeds"], sw["seeds"])
    methods = sw.get("methods")
    if not (methods == "all" or (isinstance(methods, list) and methods)):
        raise BenchmarkError(f"{where}: `methods` must be `all` or a non-empty list of method names, "
                             "e.g. methods: [finetune]")
    if methods != "all":
        sub("methods", listed(string(eg="finetune"), eg="[finetune]"), methods)
    for key in ("imports", "config_path"):
        if key in sw:
            sub(key, SCHEMA[key], sw[key])
    for key in ("method_args", "method_defaults"):
        if key in sw and not isinstance(sw[key], dict):
            sfail(key, sw[key], "is not a mapping", f"e.g. {key}: {{finetune: {{lr: 0.01}}}}" if key == "method_args"
                  else f"e.g. {key}: {{batch_size: 32}}")
    seen = []
    for i, sc in enumerate(sw["scenarios"]):
        key = f"scenarios[{i}]"
        if not isinstance(sc, dict) or "scenario" not in sc or not (sc.get("ratios") or sc.get("classes")):
            raise BenchmarkError(f"{where}: each scenario needs `scenario` and `ratios` (or `classes`), "
                                 "e.g. {scenario: random, ratios: [0.1]}")
        extra = [k for k in sc if k not in SWEEP_SCENARIO_KEYS]
        if extra:
            sfail(key, sc, f"has unknown key {extra[0]!r}", "a scenario has scenario, ratios and classes")
        sub(f"{key}.scenario", SCHEMA["forget.scenario"], sc["scenario"])
        for k in ("ratios", "classes"):
            if sc.get(k) is not None:
                if not isinstance(sc[k], list):
                    raise BenchmarkError(f"{where}: `{k}` must be a list, e.g. {k}: [{_show(sc[k])}]")
                sub(f"{key}.{k}", SCHEMA[f"forget.{k}"], sc[k])
        if sc in seen:
            sfail(key, sc, "is listed twice", "list each scenario once")
        seen.append(sc)


# -- everything, without running ------------------------------------------------------------

def check_run(args: list[str]) -> None:
    """Validates ``python -m benchmark run ARGS`` without running it: composes every config of
    the grid and checks what the plan stage checks. Loads no data, writes nothing.

    Raises:
        BenchmarkError: the first bad input, as one line.
    """
    from benchmark.config import compose_grid
    from benchmark.stages.plan import check_plan

    for cfg in compose_grid(list(args)):
        check_plan(cfg)

