"""Layered configuration with OmegaConf.

Order (later wins): ``configs/bench.yaml`` -> ``configs/dataset/<dataset>.yaml``
(under ``data``) -> ``configs/preset/<preset>.yaml`` -> command-line dot-list
overrides. Method hyperparameters come from ``configs/method/<name>.yaml``, then
``method_args.<name>.<key>=...``. Registry names, never import paths, appear in
user configs (``imports`` names the modules to import for user methods).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from benchmark.errors import BenchmarkError

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


def _load_yaml(path: Path, what: str) -> DictConfig:
    if not path.is_file():
        options = sorted(p.stem for p in path.parent.glob("*.yaml"))
        raise BenchmarkError(f"unknown {what} {path.stem!r}: no {path}; available: {', '.join(options)}")
    try:
        cfg = OmegaConf.load(path)
    except (OmegaConfBaseException, OSError, ValueError) as e:
        raise BenchmarkError(f"cannot read {path}: {str(e).splitlines()[0]}") from None
    if cfg is None or isinstance(cfg, ListConfig):
        return OmegaConf.create({})
    return cfg


def parse_overrides(overrides: list[str]) -> DictConfig:
    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise BenchmarkError(f"cannot parse {bad[0]!r}: overrides are KEY=VALUE, e.g. dataset=cifar10")
    # `logger=none` is shorthand for logger.name=none
    overrides = [("logger.name=" + o.split("=", 1)[1]) if o.split("=", 1)[0] == "logger" else o
                 for o in overrides]
    try:
        return OmegaConf.from_dotlist(list(overrides))
    except OmegaConfBaseException as e:
        raise BenchmarkError(f"cannot parse overrides: {str(e).splitlines()[0]}") from None


def compose(overrides: list[str] | None = None, config_dir: Path | None = None) -> DictConfig:
    """Builds the resolved run configuration.

    Raises:
        BenchmarkError: on an unknown key, dataset, preset, or an unreadable file.
    """
    cdir = config_dir or CONFIG_DIR
    cli = parse_overrides(list(overrides or []))
    base = _load_yaml(cdir / "bench.yaml", "base config")
    preset_name = cli.get("preset", base.get("preset"))
    preset = _load_yaml(cdir / "preset" / f"{preset_name}.yaml", "preset") if preset_name else OmegaConf.create({})
    dataset = cli.get("dataset", preset.get("dataset", base.get("dataset")))
    data = _load_yaml(cdir / "dataset" / f"{dataset}.yaml", "dataset")
    # a dataset may carry defaults for other keys (e.g. a larger attack budget for tiny data)
    dataset_overrides = data.pop("overrides", None) or {}
    cfg = OmegaConf.merge(base, {"dataset": dataset, "data": data})
    OmegaConf.set_struct(cfg, True)
    for free in ("method_args", "method_defaults", "attack.attacker_args"):  # free-form dicts
        OmegaConf.set_struct(OmegaConf.select(cfg, free), False)
    try:
        cfg = OmegaConf.merge(cfg, dataset_overrides, preset, cli)
        OmegaConf.resolve(cfg)
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None) or str(e).splitlines()[0]
        raise BenchmarkError(f"unknown or invalid config key {key!r}; see configs/bench.yaml for the keys") from None
    if cfg.model is None:
        cfg.model = cfg.data.model
    return cfg


VARIANT_KEY = "base"  # a method YAML with `base: ieu` is a variant of the registered method `ieu`


def register_method_variants(config_dir: Path | None = None) -> None:
    """Registers each ``configs/method/<name>.yaml`` that names a ``base`` method as ``<name>``."""
    from benchmark.module import METHODS

    for path in sorted((config_dir or CONFIG_DIR).glob("method/*.yaml")):
        base = _load_yaml(path, "method").get(VARIANT_KEY)
        if base and path.stem not in METHODS:
            METHODS.register(path.stem)(METHODS.get(str(base)))


SWEEP_KEYS = {"datasets", "scenarios", "seeds", "methods"}


def compose_grid(overrides: list[str] | None = None, config_dir: Path | None = None) -> list[DictConfig]:
    """The run configs of a command line: one, or one per (dataset, scenario) of
    ``sweep=<name>`` (``configs/sweep/<name>.yaml``). Command-line overrides win over the sweep."""
    cdir = config_dir or CONFIG_DIR
    overrides = list(overrides or [])
    cli = parse_overrides(overrides)
    name = cli.get("sweep", _load_yaml(cdir / "bench.yaml", "base config").get("sweep"))
    if not name:
        return [compose(overrides, cdir)]
    sweep = _load_yaml(cdir / "sweep" / f"{name}.yaml", "sweep")
    unknown = set(sweep) - SWEEP_KEYS
    if unknown:
        raise BenchmarkError(f"unknown key {sorted(unknown)[0]!r} in sweep {name!r}; "
                             f"a sweep has {', '.join(sorted(SWEEP_KEYS))}")
    datasets = list(sweep.get("datasets") or [])
    scenarios = list(sweep.get("scenarios") or [])
    if not datasets or not scenarios or not sweep.get("seeds") or not sweep.get("methods"):
        raise BenchmarkError(f"sweep {name!r} has an empty grid; give datasets, scenarios (with ratios), "
                             "seeds and methods")
    configs = []
    for ds in datasets:
        for sc in scenarios:
            if "scenario" not in sc or not (sc.get("ratios") or sc.get("classes")):
                raise BenchmarkError(f"sweep {name!r}: each scenario needs `scenario` and `ratios` (or `classes`)")
            items = {"dataset": ds, "forget.scenario": sc["scenario"], "seeds": list(sweep.seeds),
                     "methods": sweep.methods if isinstance(sweep.methods, str) else list(sweep.methods)}
            if sc.get("ratios"):
                items["forget.ratios"] = list(sc["ratios"])
            if sc.get("classes"):
                items["forget.classes"] = list(sc["classes"])
            grid = [f"{k}={_dotlist_value(v)}" for k, v in items.items()]
            configs.append(compose(grid + overrides, cdir))
    return configs


def _dotlist_value(v: Any) -> str:
    if isinstance(v, (list, ListConfig)):
        return "[" + ",".join(str(x) for x in v) + "]"
    return str(v)


def method_config(name: str, cfg: DictConfig | None = None, config_dir: Path | None = None) -> dict[str, Any]:
    """A method's keyword arguments: its base's YAML (for a variant), its YAML, then
    ``method_defaults`` (every method), then ``method_args.<name>``."""
    cdir = config_dir or CONFIG_DIR
    path = cdir / "method" / f"{name}.yaml"
    kwargs: dict[str, Any] = {}
    if path.is_file():
        own = OmegaConf.to_container(_load_yaml(path, "method"), resolve=True) or {}
        base = own.pop(VARIANT_KEY, None)
        if base:
            kwargs.update(method_config(str(base), None, cdir))
        kwargs.update(own)
    if cfg is None:
        return kwargs
    common = cfg.get("method_defaults")
    if common:
        kwargs.update(OmegaConf.to_container(common, resolve=True))
    extra = cfg.get("method_args", {}).get(name)
    if extra:
        kwargs.update(OmegaConf.to_container(extra, resolve=True))
    return kwargs


def attacker_config(name: str, cfg: DictConfig, config_dir: Path | None = None) -> dict[str, Any]:
    """An attacker's settings: ``configs/attack/<name>.yaml``, then ``attack.attacker_args.<name>``."""
    from benchmark.callbacks.relearn import ATTACKERS

    ATTACKERS.get(name)
    path = (config_dir or CONFIG_DIR) / "attack" / f"{name}.yaml"
    out: dict[str, Any] = {}
    if path.is_file():
        out.update(OmegaConf.to_container(_load_yaml(path, "attacker"), resolve=True) or {})
    extra = cfg.attack.get("attacker_args", {}).get(name)
    if extra:
        out.update(OmegaConf.to_container(extra, resolve=True))
    return out


def to_dict(cfg: DictConfig) -> dict[str, Any]:
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
