"""The schema of a run configuration: every value's type and range, checked before any work.

``benchmark.config.compose`` calls :func:`check_config` on every merged configuration and
``compose_grid`` calls :func:`check_sweep` on a sweep file's own keys, so a bad value stops
the run with one line (``error: <key>=<value> <what is wrong>; <the fix>``) before any data
loads, any file is written or any model trains. :func:`check_run` validates a whole command
line without running anything.

Keys and did-you-mean of method arguments are ``benchmark.hparams``'s job; here are their
values: the type follows the signature default (an int default needs an integer, a float
default a finite number, a str default one of the choices the base class declares) and the
base-class knobs have their common ranges.
"""

from __future__ import annotations

import inspect
import math
import os
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from benchmark.errors import BenchmarkError

SEED_MAX = 2**32 - 1  # numpy and Lightning seeds
SCENARIOS = ("random", "class", "subclass", "indices")
RELEARN_SETS = ("forget", "forget_fraction", "forgotten_test")
PRECISIONS = ("transformer-engine", "transformer-engine-float16", "16-true", "16-mixed", "bf16-true",
              "bf16-mixed", "32-true", "64-true", "64", "32", "16", "bf16", 64, 32, 16)  # Lightning 2.x
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu")
# the base class's string knobs and their choices (UnlearnModule.__init__ refuses others)
BASE_CHOICES = {"optimizer": ("sgd", "adam"), "scheduler": ("cosine", "constant")}
# common ranges of the base-class knobs: (test, what the value must be, an example)
BASE_RANGES: dict[str, tuple[Callable[[float], bool], str, str]] = {
    "batch_size": (lambda v: v >= 1, ">= 1", "32"),
    "epochs": (lambda v: v >= 1, ">= 1", "5"),
    "lr": (lambda v: v > 0, "> 0", "0.01"),
    "weight_decay": (lambda v: v >= 0, ">= 0", "5e-4"),
    "momentum": (lambda v: 0 <= v < 1, "in [0, 1)", "0.9"),
}

Rule = Callable[[str, Any], None]


def _show(value: Any) -> str:
    """A value as the user would type it, on one line, at most 60 characters."""
    if isinstance(value, (DictConfig, ListConfig)):
        value = OmegaConf.to_container(value, resolve=False)
    if isinstance(value, list):
        s = "[" + ",".join(_show(v) for v in value) + "]"
    elif isinstance(value, dict):
        s = "{" + ",".join(f"{k}:{_show(v)}" for k, v in value.items()) + "}"
    elif value is None:
        s = "null"
    elif isinstance(value, bool):
        s = str(value).lower()
    elif isinstance(value, str):
        s = repr(value) if (not value or not value.isprintable() or value != value.strip()) else value
    else:
        s = str(value)
    s = s.encode("unicode_escape").decode("ascii") if not s.isprintable() else s
    return s if len(s) <= 60 else s[:57] + "..."


class Invalid(BenchmarkError):
    """A value that breaks its rule; ``what`` is the middle of the message (for list items)."""

    def __init__(self, message: str, what: str) -> None:
        super().__init__(message)
        self.what = what


def fail(key: str, value: Any, what: str, fix: str) -> typing.NoReturn:
    raise Invalid(f"{key}={_show(value)} {what}; {fix}", what)


def _plain(value: Any) -> Any:
    if isinstance(value, (DictConfig, ListConfig)):
        return OmegaConf.to_container(value, resolve=True)
    return value


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


# -- rules: each returns a function (key, value) -> None that raises one line ----------------

def integer(lo: int | None = None, hi: int | None = None, *, null: bool = False, eg: str = "1") -> Rule:
    rng = (f"in [{lo}, {hi}]" if hi is not None else f">= {lo}") if lo is not None else ""

    def rule(key: str, v: Any) -> None:
        if v is None and null:
            return
        fix = f"use e.g. {key}={eg}" + (f" or {key}=null" if null else "")
        if not _is_int(v):
            fail(key, v, f"is not an integer{' ' + rng if rng else ''}", fix)
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            fail(key, v, f"is outside {rng[3:]}" if hi is not None else f"must be {rng}", fix)
    return rule


def number(lo: float | None = None, hi: float | None = None, *, lo_open: bool = False, hi_open: bool = False,
           null: bool = False, eg: str = "0.1") -> Rule:
    parts = []
    if lo is not None and hi is not None:
        parts.append(f"in {'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}")
    elif lo is not None:
        parts.append(f"{'>' if lo_open else '>='} {lo}")

    def rule(key: str, v: Any) -> None:
        if v is None and null:
            return
        fix = f"use e.g. {key}={eg}" + (f" or {key}=null" if null else "")
        if not _is_num(v):
            fail(key, v, f"is not a number{' ' + parts[0] if parts else ''}", fix)
        if not math.isfinite(v):
            fail(key, v, "is not a finite number", fix)
        if lo is not None and (v < lo or (lo_open and v == lo)) or hi is not None and (v > hi or (hi_open and v == hi)):
            fail(key, v, f"is outside {parts[0][3:]}" if parts[0].startswith("in ") else f"must be {parts[0]}", fix)
    return rule


def boolean(key_eg: str = "true") -> Rule:
    def rule(key: str, v: Any) -> None:
        if not isinstance(v, bool):
            fail(key, v, "is not true or false", f"use {key}=true or {key}=false")
    return rule


def string(choices: tuple[Any, ...] | None = None, *, null: bool = False, eg: str | None = None) -> Rule:
    def rule(key: str, v: Any) -> None:
        if v is None and null:
            return
        if choices is not None:
            if v not in choices or isinstance(v, bool):
                shown = "|".join(str(c) for c in dict.fromkeys(str(c) for c in choices))
                fail(key, v, f"is not one of {shown}", f"use e.g. {key}={eg or choices[0]}")
            return
        fix = f"use e.g. {key}={eg or 'NAME'}" + (f" or {key}=null" if null else "")
        if not isinstance(v, str):
            fail(key, v, "is not a string", fix)
        if not v.strip():
            fail(key, v, "is empty", fix)
    return rule


def listed(item: Rule, *, nonempty: bool = True, null: bool = False, eg: str = "[0]") -> Rule:
    """A list of ``item`` values, without duplicates; a scalar is refused with the bracketed fix."""
    def rule(key: str, v: Any) -> None:
        if v is None and null:
            return
        v = _plain(v)
        if not isinstance(v, list):
            fix_eg = f"[{_show(v)}]" if isinstance(v, (int, float, str)) and not isinstance(v, bool) and _ok(item, key, v) \
                else eg
            fail(key, v, "is not a list", f"write it in brackets, e.g. {key}={fix_eg}")
        if nonempty and not v:
            fail(key, v, "is empty", f"give at least one, e.g. {key}={eg}")
        for x in v:
            if isinstance(x, (list, dict)):
                fail(key, v, f"holds a nested {type(x).__name__}", f"use a flat list, e.g. {key}={eg}")
            try:
                item(key, x)
            except Invalid as e:
                fail(key, v, f"holds {_show(x)}, which {e.what}", f"use e.g. {key}={eg}")
        seen: list[Any] = []
        for x in v:
            if x in seen:
                fail(key, v, f"lists {_show(x)} twice", f"list each once, e.g. {key}={_show(list(dict.fromkeys(v)))}")
            seen.append(x)
    return rule


def _ok(rule: Rule, key: str, v: Any) -> bool:
    try:
        rule(key, v)
        return True
    except BenchmarkError:
        return False


def mapping() -> Rule:
    def rule(key: str, v: Any) -> None:
        if not isinstance(v, (dict, DictConfig)):
            fail(key, v, "is not a mapping", f"set its keys, e.g. {key}.KEY=VALUE")
    return rule


def devices(key: str, v: Any) -> None:
    v = _plain(v)
    if _is_int(v):
        if v < 1:
            fail(key, v, "is not an integer >= 1", f"use e.g. {key}=1 (or a list of device ids, {key}=[0,1])")
        return
    if isinstance(v, list) and v and all(_is_int(x) and x >= 0 for x in v) and len(set(v)) == len(v):
        return
    fail(key, v, "is neither a number of devices >= 1 nor a list of distinct device ids",
         f"use e.g. {key}=1 or {key}=[0,1]")


def shard(key: str, v: Any) -> None:
    from benchmark.stages.plan import parse_shard

    if v is not None and not isinstance(v, str):
        fail(key, v, "is not of the form i/n", f"use e.g. {key}=0/4")
    parse_shard(v)


def nonempty_path(key: str, v: Any) -> None:
    string(eg="PATH")(key, v)


SCHEMA: dict[str, Rule] = {
    "dataset": string(eg="digits"),
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
    "output_dir": nonempty_path,
    "cache_dir": nonempty_path,
    "trainer.accelerator": string(ACCELERATORS),
    "trainer.devices": devices,
    "trainer.precision": string(PRECISIONS, eg="32-true"),
    "trainer.strategy": string(eg="auto"),
    "trainer.log_every_n_steps": integer(1, eg="25"),
    "trainer.cpu_threads": integer(1, null=True, eg="1"),
    "attack.enabled": boolean(),
    "attack.attackers": listed(string(eg="sgd"), eg="[sgd,adam]"),
    "attack.attacker_args": mapping(),
    "attack.relearn_set": string(RELEARN_SETS),
    "attack.fraction": number(0, 1, lo_open=True, eg="0.5"),
    "attack.epochs": integer(1, eg="10"),
    "attack.max_steps": integer(1, null=True, eg="200"),
    "attack.eval_every": integer(1, null=True, eg="2"),
    "attack.delta": number(0, 1, lo_open=True, hi_open=True, eg="0.05"),
    "attack.seed": integer(0, SEED_MAX, eg="0"),
    "eval.batch_size": integer(1, eg="1024"),
    "eval.mia_shadow_max": integer(1, eg="5000"),
    "logger.name": string(("wandb", "none", None, False)),
    "logger.project": string(eg="unlearn-bench"),
    "logger.mode": string(("auto", "offline", "online", "disabled")),
    "logger.dir": string(eg="PATH"),
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
    for key in ("original", "oracle"):
        p = (cfg.get("reference") or {}).get(key)
        if p and not Path(str(p)).expanduser().is_file():
            fail(f"reference.{key}", p, "does not exist",
                 f"pass a state_dict checkpoint, or reference.{key}=null to train it with the recipe")
    for key in ("output_dir", "cache_dir"):
        check_dir_writable(key, str(cfg.get(key)))


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
    from benchmark.models import MODELS
    from benchmark.module import METHODS

    if cfg.methods != "all":
        for m in cfg.methods:
            METHODS.get(str(m))
    if cfg.get("model") is not None:
        MODELS.get(str(cfg.model))
    if cfg.attack.enabled:
        for a in cfg.attack.attackers:
            ATTACKERS.get(str(a))


# -- method hyperparameter values -----------------------------------------------------------

def _declared_kind(cls: type, name: str) -> tuple[Any, tuple[Any, ...] | None, str]:
    """(default, choices, annotation text) of keyword argument ``name`` in ``cls``'s hierarchy."""
    from benchmark.hparams import signature_defaults
    from benchmark.module import UnlearnModule

    default = signature_defaults(cls).get(name)
    ann = ""
    for c in cls.__mro__:
        init = c.__dict__.get("__init__")
        if init is None:
            continue
        p = inspect.signature(init).parameters.get(name)
        if p is not None and p.annotation is not inspect.Parameter.empty:
            ann = p.annotation if isinstance(p.annotation, str) else getattr(p.annotation, "__name__", str(p.annotation))
            if not isinstance(p.annotation, str) and typing.get_origin(p.annotation) is typing.Literal:
                return default, typing.get_args(p.annotation), ann
            break
    choices = BASE_CHOICES.get(name) if issubclass(cls, UnlearnModule) else None
    if choices is not None and default not in choices:
        choices = None  # the method gives the name its own meaning
    return default, choices, str(ann)


def check_value(key: str, value: Any, cls: type, name: str) -> None:
    """One hyperparameter value against its declaration in ``cls`` (``key`` names it in the
    message)."""
    default, choices, ann = _declared_kind(cls, name)
    value = _plain(value)
    if choices is not None:
        string(tuple(choices))(key, value)
        return
    if isinstance(default, bool):
        boolean()(key, value)
        return
    if _is_int(default):
        integer(eg=str(default))(key, value)
    elif isinstance(default, float):
        number(eg=f"{default:g}")(key, value)
    elif isinstance(default, str):
        if not isinstance(value, str):
            fail(key, value, "is not a string", f"use e.g. {key}={default}")
    elif default is None and value is not None and ("float" in ann or "int" in ann) and not _is_num(value):
        fail(key, value, "is not a number", f"use a number or {key}=null")
    elif default is None and _is_num(value) and not math.isfinite(value):
        fail(key, value, "is not a finite number", f"use a finite number or {key}=null")
    if name in BASE_RANGES and _is_num(value) and _is_num(default):
        ok, what, eg = BASE_RANGES[name]
        if ok(default) and not ok(value):
            fail(key, value, f"is outside {what[3:]}" if what.startswith("in ") else f"must be {what}",
                 f"use e.g. {key}={eg}")
    if _is_int(default) and default >= 0 and name.endswith(("epochs", "steps")) and _is_int(value) and value < 0:
        fail(key, value, "is negative", f"use e.g. {key}={default}")


def check_method_values(cfg: Any) -> None:
    """Keys (``hparams.validate``, with did-you-mean) and values of ``method_args``,
    ``method_defaults``, method variant YAMLs and the reference recipe ``data.recipe``."""
    from benchmark import hparams
    from benchmark.module import METHODS
    from benchmark.reference import RecipeTraining

    names = METHODS.names() if cfg.methods == "all" else [str(m) for m in cfg.methods]
    hparams.validate(cfg, names)
    common = _plain(cfg.get("method_defaults")) or {}
    per = _plain(cfg.get("method_args")) or {}
    for k, v in common.items():
        for m in METHODS.names():
            cls = METHODS.get(m)
            if k in hparams.signature_defaults(cls) and not cls.uses_recipe:
                check_value(f"method_defaults.{k}", v, cls, k)
    for m, args in per.items():
        cls = METHODS.get(m)
        for k, v in (args or {}).items():
            check_value(f"method_args.{m}.{k}", v, cls, k)
    for m in names:
        cls = METHODS.get(m)
        for layer, knobs in hparams.variant_chain(m):
            for k, v in knobs.items():
                check_value(f"method YAML {layer!r}: {k}", v, cls, k)
    recipe = _plain(cfg.data.get("recipe")) or {}
    if not isinstance(recipe, dict):
        fail("data.recipe", recipe, "is not a mapping", "set its keys, e.g. data.recipe.epochs=30")
    hparams.check_keys("data.recipe", RecipeTraining, recipe, "data.recipe")
    for k, v in recipe.items():
        check_value(f"data.recipe.{k}", v, RecipeTraining, k)


def _check_attack_values(cfg: Any) -> None:
    from benchmark.config import attacker_config

    args = _plain(cfg.attack.get("attacker_args")) or {}
    for name, a in args.items():
        if not isinstance(a, dict):
            fail(f"attack.attacker_args.{name}", a, "is not a mapping", f"e.g. attack.attacker_args.{name}.lr=0.01")
    if not cfg.attack.enabled:
        return
    for name in cfg.attack.attackers:
        for k, v in attacker_config(str(name), cfg).items():
            key = f"attack.attacker_args.{name}.{k}"
            if k in BASE_RANGES:
                ok, what, eg = BASE_RANGES[k]
                rule = integer(eg=eg) if k == "batch_size" else number(eg=eg)
                rule(key, v)
                if not ok(v):
                    fail(key, v, f"is outside {what[3:]}" if what.startswith("in ") else f"must be {what}",
                         f"use e.g. {key}={eg}")
            elif _is_num(v) and not math.isfinite(v):
                fail(key, v, "is not a finite number", f"use e.g. {key}=0")


# -- folders ----------------------------------------------------------------------------------

def check_dir_writable(key: str, path: str) -> None:
    """``path`` is, or can be created as, a writable folder; creates nothing."""
    p = Path(path).expanduser()
    cur = p
    while not cur.exists():
        if cur.parent == cur:
            break
        cur = cur.parent
    if cur.exists() and not cur.is_dir():
        what = "is a file" if cur == p else f"cannot be created: {cur} is a file"
        fail(key, path, f"{what}, not a folder", f"pass a folder, {key}=PATH")
    ro = False
    try:
        ro = bool(os.statvfs(cur).f_flag & os.ST_RDONLY)
    except OSError:
        pass
    if ro or not os.access(cur, os.W_OK | os.X_OK):
        where = "" if cur == p else f" ({cur} is read-only)"
        fail(key, path, f"is not writable{where}", f"pass a folder you can write, {key}=PATH")


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
