"""A method's hyperparameters: its keyword arguments, resolved and checked before any work.

One home for each default: the keyword-only arguments of the method's class (and of
the base classes it forwards ``**kw`` to). Configuration only overrides them, in this
order (later wins):

1. the signature defaults;
2. for a variant (``configs/method/<name>.yaml`` with ``base: <method>``), its base's
   YAML chain, then ``method_defaults`` and ``method_args.<base>``, then the variant's
   own YAML knobs, so an ablation differs from its base in exactly the knob it names;
3. ``method_defaults.<key>`` (every method that accepts the key);
4. ``method_args.<name>.<key>``;
5. with ``tuned=true``, the method's tuned values (``configs/tuned/*.yaml``, written by
   ``python -m benchmark tune``; :mod:`benchmark.tuned`), except for the keys the user set in
   ``method_args`` (a ``method_args`` value that the dataset's or preset's ``overrides:``
   declare is the benchmark's, and tuning searched over it: the tuned value replaces it).

Every key is checked against the signature with a did-you-mean, and
``method_args.<name>`` for a method that does not exist is an error, before any
data loads. ``retrain`` takes the dataset's reference recipe instead.
"""

from __future__ import annotations

import difflib
import inspect
import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

from omegaconf import OmegaConf

from benchmark.errors import BenchmarkError

VARIANT_KEY = "base"  # a method YAML with `base: ieu` is a variant of the registered method `ieu`
SEARCH_KINDS = ("log", "float", "int", "categorical")


def _init_params(cls: type) -> tuple[dict[str, inspect.Parameter], bool]:
    sig = inspect.signature(cls.__dict__["__init__"])
    own = {n: p for n, p in sig.parameters.items() if p.kind is p.KEYWORD_ONLY}
    var_kw = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
    return own, var_kw


def signature_defaults(cls: type) -> dict[str, Any]:
    """The method's hyperparameters with their defaults: its own keyword-only arguments, then
    those of the base classes it forwards ``**kw`` to (a subclass's default wins)."""
    from benchmark.module import UnlearnModule

    out: dict[str, Any] = {}
    for c in cls.__mro__:
        if "__init__" not in c.__dict__ or not (isinstance(c, type) and issubclass(c, UnlearnModule)):
            continue
        own, var_kw = _init_params(c)
        for n, p in own.items():
            out.setdefault(n, None if p.default is inspect.Parameter.empty else p.default)
        if not var_kw or c is UnlearnModule:
            break
    return out


def check_keys(method: str, cls: type, keys: Iterable[str], where: str) -> None:
    """Every key must be a keyword argument of ``cls``; else one line with a did-you-mean."""
    accepted = signature_defaults(cls)
    for k in keys:
        if k not in accepted:
            close = difflib.get_close_matches(str(k), list(accepted), n=1, cutoff=0.5)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise BenchmarkError(f"{where}: {method!r} has no hyperparameter {k!r}; {hint}"
                                 f"it takes {', '.join(sorted(accepted)) or 'none'}")


def _plain(node: Any) -> dict[str, Any]:
    if node is None:
        return {}
    if OmegaConf.is_config(node):
        return dict(OmegaConf.to_container(node, resolve=True) or {})
    return dict(node)


def variant_chain(name: str) -> list[tuple[str, dict[str, Any]]]:
    """``[(registered base, {}), ..., (name, its YAML knobs)]``: the YAML layers of a method."""
    from benchmark.config import find_config, load_yaml

    chain: list[tuple[str, dict[str, Any]]] = []
    seen: set[str] = set()
    cur: str | None = name
    while cur is not None:
        if cur in seen:
            raise BenchmarkError(f"method variant {name!r}: `base:` chain loops through {cur!r}")
        seen.add(cur)
        path = find_config("method", cur, required=False)
        own = _plain(load_yaml(path, "method")) if path else {}
        base = own.pop(VARIANT_KEY, None)
        chain.append((cur, own))
        cur = str(base) if base else None
    return list(reversed(chain))


def variant_of(name: str) -> tuple[str, set[str]] | None:
    """``(registered base, the knobs the variant's YAML layers set)`` for a variant
    (``ieu_no_decay`` -> ``("ieu", {"weight_decay"})``); None for a registered method."""
    chain = variant_chain(name)
    if len(chain) < 2:
        return None
    return chain[0][0], {k for _, knobs in chain[1:] for k in knobs}


def _method_cfg(cfg: Any, key: str) -> dict[str, Any]:
    return _plain(cfg.get(key)) if cfg is not None else {}


def resolve(name: str, cfg: Any = None, *, method_defaults: Mapping[str, Any] | None = None,
            method_args: Mapping[str, Any] | None = None, tuned: Mapping[str, Any] | None = None
            ) -> dict[str, Any]:
    """The fully resolved keyword arguments of method ``name`` (see the module docstring).

    ``method_defaults``/``method_args`` default to ``cfg.method_defaults``/``cfg.method_args``;
    ``tuned`` is the method's tuned values: they replace the signature, ``method_defaults`` and the
    dataset's declared overrides, but not a ``method_args`` value the user passed.
    """
    from benchmark.generative.methods import method_registry

    cls = method_registry(cfg).get(name)
    if cls.uses_recipe:
        recipe = _plain(cfg.data.recipe) if cfg is not None else {}
        return {**signature_defaults(cls), "reinit": True, **recipe}
    common = dict(method_defaults if method_defaults is not None else _method_cfg(cfg, "method_defaults"))
    per = dict(method_args if method_args is not None else _method_cfg(cfg, "method_args"))
    accepted = signature_defaults(cls)
    out = dict(accepted)
    chain = variant_chain(name)
    for i, (layer, knobs) in enumerate(chain):
        out.update(knobs)
        if i == 0:  # the registered class: the shared overrides apply on top of its layer
            out.update({k: v for k, v in common.items() if k in accepted})
        out.update(_plain(per.get(layer)))
    # the tuned values replace what the benchmark declares (the dataset's and preset's `overrides:`,
    # which tuning searched over) but not what the user passed; a variant's tuned values never
    # name its own knobs (they are not in its search_space)
    explicit = _explicit_keys(cfg, chain, per) if tuned and method_args is None and cfg is not None else set()
    out.update({k: v for k, v in dict(tuned or {}).items() if k not in explicit})
    return out


def _explicit_keys(cfg: Any, chain: list[tuple[str, dict[str, Any]]], per: Mapping[str, Any]) -> set[str]:
    """The ``method_args`` keys of the method's layers that the user set: those the dataset's and
    preset's declared overrides do not hold with the same value."""
    from benchmark.config import declared_method_overrides

    _, declared_per = declared_method_overrides(cfg)
    keys: set[str] = set()
    for layer, _ in chain:
        theirs = _plain(declared_per.get(layer))
        keys |= {k for k, v in _plain(per.get(layer)).items() if k not in theirs or _canon(theirs[k]) != _canon(v)}
    return keys


def declared(name: str, cfg: Any, tuned: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The arguments a method runs with when the user changes nothing: its signature, YAML and
    the dataset's and preset's declared overrides (``configs/dataset/*.yaml`` ``overrides:``),
    and its ``tuned`` values when it runs tuned."""
    from benchmark.config import declared_method_overrides

    common, per = declared_method_overrides(cfg)
    return resolve(name, cfg, method_defaults=common, method_args=per, tuned=tuned)


def variant_label(resolved: Mapping[str, Any], base: Mapping[str, Any]) -> str:
    """``"alpha=0.1,lr=0.05"``: the resolved arguments that differ from ``base``; "" if none."""
    diff = [k for k in sorted(resolved) if _canon(resolved[k]) != _canon(base.get(k, _MISSING))]
    return ",".join(f"{k}={_short(resolved[k])}" for k in diff)


_MISSING = object()


def _canon(v: Any) -> str:
    return json.dumps(v, sort_keys=True, default=str) if v is not _MISSING else "<missing>"


def _short(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    return json.dumps(v, default=str) if isinstance(v, (dict, list)) else str(v)


def validate(cfg: Any, methods: list[str]) -> None:
    """Checks ``method_args`` and ``method_defaults`` against the methods' signatures.

    Raises:
        BenchmarkError: an unknown method under ``method_args``, an unknown hyperparameter
            (with a did-you-mean), or a ``method_defaults`` key no selected method takes.
    """
    from benchmark.generative.methods import method_registry

    registry = method_registry(cfg)  # the task's methods (classifiers, or generators with task=generate)
    for name, args in _method_cfg(cfg, "method_args").items():
        registry.get(name)  # unknown method: did-you-mean
        if not isinstance(args, Mapping):
            raise BenchmarkError(f"method_args.{name} must be a mapping of hyperparameters, e.g. "
                                 f"method_args.{name}.lr=0.01; got {args!r}")
        check_keys(name, _registered_class(name, cfg), args, f"method_args.{name}")
    common = _method_cfg(cfg, "method_defaults")
    everyone: dict[str, None] = {}
    for m in registry.names():
        everyone.update(dict.fromkeys(signature_defaults(_registered_class(m, cfg))))
    for k in common:  # a key some method takes (it applies to those that take it)
        if k not in everyone:
            close = difflib.get_close_matches(str(k), list(everyone), n=1, cutoff=0.5)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise BenchmarkError(f"method_defaults: no method has a hyperparameter {k!r}; {hint}"
                                 "method_defaults.KEY applies to every method that takes KEY")
    for m in methods:
        cls = _registered_class(m, cfg)
        for layer, knobs in variant_chain(m):
            check_keys(layer, cls, knobs, f"method YAML {layer!r}")
        validate_search_space(m, cls)


def _registered_class(name: str, cfg: Any = None) -> type:
    from benchmark.generative.methods import method_registry

    return method_registry(cfg).get(name)


def validate_search_space(name: str, cls: type) -> None:
    """``search_space`` names only real arguments, each as ``(kind, low, high)`` or
    ``("categorical", [choices])``."""
    space = getattr(cls, "search_space", None) or {}
    check_keys(name, cls, space, f"{cls.__name__}.search_space")
    for k, spec in space.items():
        ok = isinstance(spec, (tuple, list)) and spec and spec[0] in SEARCH_KINDS
        if ok and spec[0] != "categorical":
            ok = len(spec) == 3 and all(isinstance(x, (int, float)) and math.isfinite(x) for x in spec[1:]) \
                and spec[1] < spec[2] and (spec[0] != "log" or spec[1] > 0)
        if not ok:
            raise BenchmarkError(f"{cls.__name__}.search_space[{k!r}] = {spec!r}; use (kind, low, high) with kind "
                                 "in log|float|int (low < high, log: low > 0) or ('categorical', [choices])")


def search_space(name: str) -> dict[str, tuple[Any, ...]]:
    """What a search varies for method ``name``: its class's checked ``search_space`` less the
    knobs its variant YAML fixes (``ieu_no_ascent`` is searched with alpha held at 0, so that
    tuning never undoes an ablation). ``{}`` for a method with nothing to tune."""
    cls = _registered_class(name)
    if cls.uses_recipe:
        return {}
    validate_search_space(name, cls)
    fixed = {k for _, knobs in variant_chain(name)[1:] for k in knobs}
    return {k: tuple(v) if v[0] != "categorical" else ("categorical", list(v[1]))
            for k, v in (getattr(cls, "search_space", None) or {}).items() if k not in fixed}
