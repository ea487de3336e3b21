"""Layered configuration with OmegaConf, checked before any data loads.

Order (later wins): ``configs/bench.yaml`` -> ``configs/dataset/<dataset>.yaml``
(under ``data``; its ``overrides:`` block sets other keys for that dataset) ->
``configs/preset/<preset>.yaml`` -> a sweep's shared keys -> command-line dot-list
overrides. Config files are looked up on a search path: ``config_path`` folders,
then each imported package's own ``configs/`` folder, then the suite's ``configs/``.
Method hyperparameters are the methods' keyword arguments (``benchmark.hparams``).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from benchmark.errors import BenchmarkError

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
FREE_FORM = ("method_args", "method_defaults", "attack.attacker_args")  # dicts checked by their owners
# a sweep file: its grid, and keys it may set for every cell of the grid
SWEEP_GRID = {"datasets", "scenarios", "seeds", "methods"}
SWEEP_SHARED = {"imports", "config_path", "method_args", "method_defaults"}

_search_path: list[Path] = [CONFIG_DIR]


def search_path() -> list[Path]:
    """The folders config files are looked up in, first match wins."""
    return list(_search_path)


def set_search_path(extra: list[str | Path], imports: list[str]) -> list[Path]:
    """``config_path`` folders, then each imported package's ``configs/``, then the suite's."""
    dirs: list[Path] = []
    for p in extra or []:
        d = Path(str(p)).expanduser()
        if not d.is_dir():
            raise BenchmarkError(f"config_path entry {str(p)!r} is not a folder; pass existing folders, "
                                 "e.g. config_path=[mylab/configs]")
        dirs.append(d.resolve())
    for name in imports or []:
        mod = importlib.import_module(str(name).split(".")[0])
        for base in getattr(mod, "__path__", []) or [Path(getattr(mod, "__file__", "") or ".").parent]:
            for cand in (Path(base) / "configs", Path(base).parent / "configs"):
                if cand.is_dir() and cand.resolve() != CONFIG_DIR and cand.resolve() not in dirs:
                    dirs.append(cand.resolve())
                    break
    _search_path[:] = [*dirs, CONFIG_DIR]
    return search_path()


def import_user_modules(names: list[str]) -> None:
    """Imports ``imports=[...]`` so user methods and models register themselves, then the baselines."""
    for name in names or []:
        try:
            importlib.import_module(str(name))
        except (ImportError, ValueError, TypeError) as e:  # a missing module; an empty or relative name
            raise BenchmarkError(f"cannot import {name!r} from imports=[...] ({' '.join(str(e).split())[:100]}); "
                                 "put its folder on PYTHONPATH or install it") from None
    importlib.import_module("baselines")


def find_config(kind: str, name: str, required: bool = True) -> Path | None:
    """``<dir>/<kind>/<name>.yaml`` on the search path; a path to a YAML file is taken as it is."""
    as_path = Path(str(name)).expanduser()
    if str(name).endswith((".yaml", ".yml")) or "/" in str(name):
        if as_path.is_file():
            return as_path
        if required:
            raise BenchmarkError(f"{kind} file {str(name)!r} does not exist; pass an existing YAML file "
                                 f"or the name of one in {kind}/ on the config path")
        return None
    for d in _search_path:
        p = d / kind / f"{name}.yaml"
        if p.is_file():
            return p
    if not required:
        return None
    options = sorted({p.stem for d in _search_path for p in (d / kind).glob("*.yaml")})
    import difflib

    close = difflib.get_close_matches(str(name), options, n=1, cutoff=0.5)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise BenchmarkError(f"unknown {kind} {name!r}; {hint}available: {', '.join(options)}")


def load_yaml(path: Path, what: str) -> DictConfig:
    try:
        cfg = OmegaConf.load(path)
    except (OmegaConfBaseException, OSError, ValueError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise BenchmarkError(f"cannot read {what} file {path}: {str(e).splitlines()[0] if str(e) else e}; "
                             "fix its YAML") from None
    if cfg is None or (isinstance(cfg, DictConfig) and not cfg):
        return OmegaConf.create({})
    if isinstance(cfg, ListConfig):
        raise BenchmarkError(f"{what} file {path} holds a list; it must be a mapping of keys to values")
    return cfg


def parse_overrides(overrides: list[str]) -> DictConfig:
    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise BenchmarkError(f"cannot parse {bad[0]!r}: overrides are KEY=VALUE, e.g. dataset=cifar10")
    empty = [o for o in overrides if not o.split("=", 1)[1].strip()]
    if empty:  # OmegaConf would read `KEY=` as null: say so instead of guessing
        key = empty[0].split("=", 1)[0]
        if key == "shard":
            raise BenchmarkError("shard has no value (--shard with nothing after it?); give a slice i/n, "
                                 "e.g. --shard 0/4, or leave it out to run the whole grid")
        raise BenchmarkError(f"{key}= has no value; give one, e.g. {key}=VALUE, or {key}=null for none")
    # `logger=none` is shorthand for logger.name=none, `executor=ray` for executor.name=ray
    overrides = [(o.split("=", 1)[0] + ".name=" + o.split("=", 1)[1]) if o.split("=", 1)[0] in ("logger", "executor")
                 else o for o in overrides]
    for o in overrides:  # one at a time, so the message names the one that does not parse
        try:
            OmegaConf.from_dotlist([o])
        except (OmegaConfBaseException, yaml.YAMLError, ValueError, TypeError) as e:
            lines = [ln.strip() for ln in str(e).splitlines() if ln.strip() and not ln.strip().startswith("in ")]
            why = ": ".join(lines)[:120] or type(e).__name__
            raise BenchmarkError(f"cannot parse {o!r} ({why}); check its brackets and quotes, "
                                 "e.g. seeds=[0,1] or methods=[finetune]") from None
    try:
        return OmegaConf.from_dotlist(list(overrides))
    except (OmegaConfBaseException, yaml.YAMLError, ValueError, TypeError) as e:
        raise BenchmarkError(f"cannot parse overrides: {' '.join(str(e).split())[:120]}") from None


def _base() -> DictConfig:
    return load_yaml(CONFIG_DIR / "bench.yaml", "base config")


def _prepare_search(cli: DictConfig, extra: dict | None = None) -> None:
    from benchmark.schema import SCHEMA

    base = _base()
    extra = extra or {}
    raw_path = cli.get("config_path", extra.get("config_path", base.get("config_path")))
    raw_imports = cli.get("imports", base.get("imports"))
    SCHEMA["config_path"]("config_path", raw_path)  # lists of names, checked before they are used
    SCHEMA["imports"]("imports", raw_imports)
    config_path = list(raw_path or [])
    imports = [*list(extra.get("imports") or []), *list(raw_imports or [])]
    import_user_modules(imports)
    set_search_path(config_path, imports)
    register_method_variants()


def compose(overrides: list[str] | None = None, shared: dict[str, Any] | None = None) -> DictConfig:
    """Builds one resolved run configuration.

    Args:
        overrides: command-line ``KEY=VALUE`` items (they win).
        shared: keys a sweep file sets for every cell (``imports``, ``method_args``, ...).

    Raises:
        BenchmarkError: on an unknown key, dataset, preset, or an unreadable file.
    """
    cli = parse_overrides(list(overrides or []))
    _prepare_search(cli, shared)
    base = _base()
    preset_name = cli.get("preset", base.get("preset"))
    preset = load_yaml(find_config("preset", preset_name), "preset") if preset_name else OmegaConf.create({})
    dataset = cli.get("dataset", preset.get("dataset", base.get("dataset")))
    data = load_yaml(find_config("dataset", str(dataset)), "dataset")
    dataset_overrides = data.pop("overrides", None) or {}
    task = cli.get("task", preset.get("task", base.get("task")))
    from benchmark.schema import SCHEMA

    SCHEMA["task"]("task", task)  # before the task's layer is chosen
    if str(task) == "generate":
        data, dataset_overrides = _generate_layer(str(dataset), data)
    cfg = OmegaConf.merge(base, {"dataset": dataset, "data": data})
    OmegaConf.set_struct(cfg, True)
    for free in FREE_FORM:
        OmegaConf.set_struct(OmegaConf.select(cfg, free), False)
    try:
        cfg = OmegaConf.merge(cfg, dataset_overrides, preset, OmegaConf.create(shared or {}), cli)
        OmegaConf.resolve(cfg)
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None) or str(e).splitlines()[0]
        raise BenchmarkError(f"unknown or invalid config key {key!r}; see configs/bench.yaml for the keys") from None
    except (TypeError, ValueError) as e:  # e.g. a list where the config has a mapping
        raise BenchmarkError(f"a value does not fit its key ({' '.join(str(e).split())[:100]}): a list where a "
                             "mapping belongs or the reverse; see configs/bench.yaml for the keys") from None
    if cfg.model is None:
        cfg.model = cfg.data.model
    if shared and shared.get("imports"):
        cfg.imports = [*shared["imports"], *[i for i in cfg.imports if i not in shared["imports"]]]
    from benchmark.schema import check_config

    check_config(cfg)  # every value, before any data loads
    return cfg


def _generate_layer(dataset: str, data: DictConfig) -> tuple[DictConfig, Any]:
    """``task=generate``: ``configs/generate/<dataset>.yaml`` over the dataset's ``data`` (its
    generator, recipe, diffusion and evaluator; the recipe replaced whole), and its own
    ``overrides:`` in place of the dataset's (those are the classifiers' settings)."""
    path = find_config("generate", dataset, required=False)
    if path is None:
        options = sorted({p.stem for d in _search_path for p in (d / "generate").glob("*.yaml")})
        raise BenchmarkError(f"task=generate has no settings for dataset {dataset!r}: add configs/generate/"
                             f"{dataset}.yaml (generator, recipe, diffusion, evaluator); available: "
                             f"{', '.join(options)}")
    gen = load_yaml(path, "generate")
    overrides = gen.pop("overrides", None) or {}
    recipe = gen.get("recipe")
    merged = OmegaConf.merge(data, gen)
    if recipe is not None:
        merged.recipe = recipe
    return merged, overrides


def declared_method_overrides(cfg: DictConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(method_defaults, method_args)`` that the dataset's and preset's files declare: the
    benchmark's own settings, which a row label does not call a variant."""
    common: dict[str, Any] = {}
    per: dict[str, Any] = {}
    if str(cfg.get("task", "classify")) == "generate":
        layers = [load_yaml(find_config("generate", str(cfg.dataset)), "generate").get("overrides") or {}]
    else:
        layers = [load_yaml(find_config("dataset", str(cfg.dataset)), "dataset").get("overrides") or {}]
    if cfg.get("preset"):
        layers.append(load_yaml(find_config("preset", str(cfg.preset)), "preset"))
    for layer in layers:
        layer = OmegaConf.to_container(OmegaConf.create(layer), resolve=True) if layer else {}
        common.update(layer.get("method_defaults") or {})
        for m, args in (layer.get("method_args") or {}).items():
            per.setdefault(m, {}).update(args or {})
    return common, per


def register_method_variants() -> None:
    """Registers each ``method/<name>.yaml`` on the search path that names a ``base`` method."""
    from benchmark.hparams import VARIANT_KEY
    from benchmark.module import METHODS

    for d in reversed(_search_path):
        for path in sorted(d.glob("method/*.yaml")):
            base = load_yaml(path, "method").get(VARIANT_KEY)
            if base and path.stem not in METHODS:
                METHODS.register(path.stem)(METHODS.get(str(base)))


def compose_grid(overrides: list[str] | None = None) -> list[DictConfig]:
    """The run configs of a command line: one, or one per (dataset, scenario) of ``sweep=NAME``
    (``sweep/NAME.yaml`` on the config path, or a path to a YAML file). The command line wins."""
    overrides = list(overrides or [])
    cli = parse_overrides(overrides)
    name = cli.get("sweep", _base().get("sweep"))
    if not name:
        return [compose(overrides)]
    _prepare_search(cli)
    sweep = load_yaml(find_config("sweep", str(name)), "sweep")
    unknown = set(sweep) - SWEEP_GRID - SWEEP_SHARED
    if unknown:
        raise BenchmarkError(f"unknown key {sorted(unknown)[0]!r} in sweep {name!r}; a sweep has "
                             f"{', '.join(sorted(SWEEP_GRID | SWEEP_SHARED))}")
    try:
        sw = OmegaConf.to_container(sweep, resolve=True)
    except OmegaConfBaseException as e:
        raise BenchmarkError(f"cannot read sweep file {name!r}: {' '.join(str(e).split())[:120]}; fix its YAML") from None
    from benchmark.schema import check_sweep

    check_sweep(sw, str(name))  # the grid's own keys, before any config is composed
    shared = {k: sw[k] for k in SWEEP_SHARED if k in sw}
    methods = sw["methods"]
    configs = []
    for ds in sw["datasets"]:
        for sc in sw["scenarios"]:
            items = {"dataset": ds, "forget.scenario": sc["scenario"], "seeds": sw["seeds"], "methods": methods}
            for key in ("ratios", "classes"):
                if sc.get(key) is not None:
                    items[f"forget.{key}"] = sc[key]
            grid = [f"{k}={_dotlist_value(v)}" for k, v in items.items()]
            configs.append(compose(grid + overrides, shared))
    return configs


def _dotlist_value(v: Any) -> str:
    if isinstance(v, (list, ListConfig)):
        return "[" + ",".join(str(x) for x in v) + "]"
    return str(v)


def attacker_config(name: str, cfg: DictConfig) -> dict[str, Any]:
    """An attacker's settings: ``attack/<name>.yaml``, then ``attack.attacker_args.<name>``."""
    from benchmark.callbacks.relearn import ATTACKERS

    ATTACKERS.get(name)
    path = find_config("attack", name, required=False)
    out: dict[str, Any] = {}
    if path is not None:
        out.update(OmegaConf.to_container(load_yaml(path, "attacker"), resolve=True) or {})
    extra = cfg.attack.get("attacker_args", {}).get(name)
    if extra:
        out.update(OmegaConf.to_container(extra, resolve=True))
    return out


def to_dict(cfg: DictConfig) -> dict[str, Any]:
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
