"""The identity of a result: everything that changes a number, code included.

A cell's identity is a plain dict (method and its fully resolved hyperparameters,
model, dataset spec, forget scenario with the contents of any index file, seed,
brought reference checkpoints, attack plan, evaluation and trainer settings,
protocol version). Its hashes:

- ``config_id``: the identity without code: the same configuration under any code;
- ``cell_id``: the identity plus the method's code fingerprint: a record is reused
  only under exactly this; a record of the same ``config_id`` under another
  fingerprint is stale and rerun;
- ``row_key``: the identity without the seed: records that share it are the seeds of
  one table row, and nothing else is ever pooled with them;
- ``table_key``: the identity without seed, method and hyperparameters (and their source,
  ``hparams_source: tuned``, which only tuned cells carry): one table.
"""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import inspect
import json
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

from benchmark.version import PROTOCOL_VERSION

SUITE_ROOT = Path(__file__).resolve().parent.parent
_SUITE_PACKAGES = ("benchmark", "baselines")
CODE_VERSION = 1  # bump to invalidate every record when the identity's own rules change


def digest(obj: Any, n: int = 16) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:n]


def file_digest(path: str | Path | None) -> str | None:
    """SHA-256 of a file's contents (None for no file); an unreadable file raises OSError."""
    if not path:
        return None
    return hashlib.sha256(Path(str(path)).expanduser().read_bytes()).hexdigest()


@cache
def _source_digest(module_name: str) -> str:
    mod = sys.modules.get(module_name)
    try:
        src = inspect.getsource(mod) if mod is not None else ""
    except (OSError, TypeError):
        src = ""
    return hashlib.sha256(src.encode()).hexdigest()[:16]


@cache
def _package_version(module_name: str) -> str:
    """The installed version of an outside package, or the git revision of its folder."""
    top = module_name.split(".")[0]
    dists = md.packages_distributions().get(top) or []
    for d in dists:
        try:
            return f"{d}=={md.version(d)}"
        except md.PackageNotFoundError:
            continue
    mod = sys.modules.get(module_name)
    folder = Path(getattr(mod, "__file__", "") or ".").resolve().parent
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, timeout=5)
        if rev.returncode == 0:
            return f"git:{rev.stdout.strip()[:12]}"
    except (OSError, subprocess.SubprocessError):
        pass
    return "unversioned"


def _suite_modules_used(module_name: str) -> set[str]:
    """The suite's own modules a module imports names from (its shared loss terms, helpers)."""
    mod = sys.modules.get(module_name)
    used: set[str] = set()
    for value in vars(mod).values() if mod is not None else []:
        owner = value.__name__ if inspect.ismodule(value) else getattr(value, "__module__", None)
        if isinstance(owner, str) and owner.split(".")[0] in _SUITE_PACKAGES and owner != module_name:
            used.add(owner)
    return used


def code_fingerprint(cls: type) -> dict[str, Any]:
    """The method's code: the source of every module in its class hierarchy (up to and with
    ``UnlearnModule``) and of the suite modules they import names from, plus the version or
    git revision of any outside package among them.

    Returns:
        ``{"fingerprint": str, "modules": {module: source digest}, "packages": {module: version}}``.
    """
    from benchmark.module import UnlearnModule

    names: set[str] = set()
    for c in cls.__mro__:
        if isinstance(c, type) and issubclass(c, UnlearnModule):
            names.add(c.__module__)
    for n in list(names):
        names |= _suite_modules_used(n)
    modules = {n: _source_digest(n) for n in sorted(names)}
    packages = {n: _package_version(n) for n in sorted(names) if n.split(".")[0] not in _SUITE_PACKAGES}
    return {"fingerprint": digest([CODE_VERSION, modules, packages]), "modules": modules, "packages": packages}


def cell_keys(identity: dict[str, Any], fingerprint: str) -> dict[str, str]:
    """``config_id``, ``cell_id``, ``row_key`` and ``table_key`` of a cell identity."""
    no_seed = {k: v for k, v in identity.items() if k not in ("seed", "forget_draw")}
    table = {k: v for k, v in no_seed.items() if k not in ("method", "method_class", "hparams", "hparams_source")}
    config_id = digest(identity)
    return {"config_id": config_id, "cell_id": digest([config_id, fingerprint]),
            "row_key": digest([no_seed, fingerprint]), "table_key": digest(table)}


def base_identity() -> dict[str, Any]:
    return {"protocol_version": PROTOCOL_VERSION}
