"""Method hyperparameter values: the type follows the signature default (an int default
needs an integer, a float default a finite number, a str default one of the choices the base
class declares) and the base-class knobs have their common ranges. Keys and did-you-mean are
``benchmark.hparams``'s job."""

from __future__ import annotations

import inspect
import math
import typing
from typing import Any

from benchmark.schema.rules import (
    BASE_CHOICES,
    BASE_RANGES,
    _is_int,
    _is_num,
    _plain,
    boolean,
    fail,
    integer,
    number,
    string,
)


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
    from benchmark.generative.methods import DenoisingTraining, method_registry
    from benchmark.reference import RecipeTraining

    METHODS = method_registry(cfg)  # noqa: N806 - the task's registry (generators with task=generate)
    if str(cfg.get("task", "classify")) == "generate":
        RecipeTraining = DenoisingTraining  # noqa: N806 - what trains the reference generators
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


