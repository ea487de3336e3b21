"""Rules: each a function ``(key, value) -> None`` that raises one ``BenchmarkError`` line
(``<key>=<value> <what is wrong>; <the fix>``), and the constants they share."""

from __future__ import annotations

import math
import os
import typing
from collections.abc import Callable
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


