"""Tuned hyperparameters as an artefact: ``configs/tuned/<dataset>-<model>-<scenario>.yaml``.

``python -m benchmark tune`` (:mod:`benchmark.tune`) writes one entry per forget setting
and method: the best trial's values of the searched hyperparameters, with the provenance
that makes them checkable (budget, objective, sampler and seed, the held-out forget
seeds, the date, the method's code fingerprint, the search space, the hyperparameters
held fixed). ``python -m benchmark run tuned=true`` (or ``tuned=PATH``) reads them as a
layer of :func:`benchmark.hparams.resolve` between ``method_defaults`` and
``method_args``; every record then says ``hparams_source: tuned`` and names the file.

A file looks like::

    dataset: digits
    model: digits_mlp
    scenario: random
    settings:
      ratio=0.1:
        finetune: {params: {epochs: 13, lr: 0.034}, value: 2.31, objective: avg_gap, ...}

Missing entries are errors, never a silent fall-back to defaults: a tuned table that
quietly held default rows would compare what it says it does not.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from filelock import FileLock

from benchmark import hparams
from benchmark.config import CONFIG_DIR, find_config
from benchmark.errors import BenchmarkError
from benchmark.identity import code_fingerprint, file_digest
from benchmark.io import atomic_write_text

HEADER = ("# Tuned hyperparameters: the best trial of each method's study, written by `python -m benchmark tune`\n"
          "# (README \"Tuning\", docs/protocol.md section 7). `python -m benchmark run tuned=true` reads them.\n")


AUTO = "auto"  # tuned=auto: the tuned file when there is one covering the run, else defaults (one line says so)


def file_name(cfg: Any) -> str:
    return f"{cfg.dataset}-{cfg.model}-{cfg.forget.scenario}"


def default_path(cfg: Any) -> Path:
    """Where ``tune`` writes by default: ``configs/tuned/<dataset>-<model>-<scenario>.yaml``."""
    return CONFIG_DIR / "tuned" / f"{file_name(cfg)}.yaml"


def make_command(cfg: Any, extra: str = "") -> str:
    """The command that produces the tuned file of ``cfg`` (for error messages)."""
    preset = f" PRESET={cfg.preset}" if cfg.get("preset") else ""
    args = f"forget.scenario={cfg.forget.scenario} {extra}".strip()
    return f'make tune DATASET={cfg.dataset}{preset} ARGS="{args}"'


def setting_key(cfg: Any, ratio: float | None) -> str:
    """The forget setting an entry was tuned for: ``ratio=0.1``, ``classes=3``, ``indices=<digest>``."""
    f, parts = cfg.forget, []
    if f.get("classes"):
        parts.append("classes=" + ",".join(str(int(c)) for c in f.classes))
    if ratio is not None:
        parts.append(f"ratio={float(ratio):g}")
    if f.get("indices_file"):
        parts.append(f"indices={(file_digest(f.indices_file) or '')[:12]}")
    return ",".join(parts) or "all"


def tunable(name: str) -> bool:
    """Whether ``tune`` tunes a method by default: a non-empty search space, not a reference row
    (original, retrain) and not a cheat of the sanity battery."""
    from benchmark.module import METHODS
    from benchmark.stages.plan import REFERENCE_ROWS

    return (name not in REFERENCE_ROWS and not METHODS.get(name).sanity and hparams.variant_of(name) is None
            and bool(hparams.search_space(name)))


def read(path: Path) -> dict[str, Any]:
    """A tuned file, checked for shape; one line naming the file on anything malformed."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise BenchmarkError(f"cannot read tuned file {path}: {str(e).splitlines()[0] if str(e) else e}; "
                             "fix it or regenerate it with make tune") from None
    if not isinstance(data, dict) or not isinstance(data.get("settings", {}), dict):
        raise BenchmarkError(f"tuned file {path} is not a mapping with `settings:`; regenerate it with make tune")
    for key, methods in (data.get("settings") or {}).items():
        for m, e in (methods or {}).items() if isinstance(methods, dict) else [(None, None)]:
            if not isinstance(e, dict) or not isinstance(e.get("params"), dict):
                raise BenchmarkError(f"tuned file {path}: settings.{key}.{m} has no `params:` mapping; "
                                     "regenerate it with make tune")
    return data


def tuned_file(cfg: Any) -> Path | None:
    """The file ``tuned`` names: None for ``tuned=false``; ``true`` = ``tuned/<dataset>-<model>-<scenario>.yaml``
    on the config search path; otherwise a path to a YAML file."""
    spec = cfg.get("tuned", False)
    if spec is False or spec is None:
        return None
    if spec == AUTO:
        return find_config("tuned", file_name(cfg), required=False)
    if spec is True:
        path = find_config("tuned", file_name(cfg), required=False)
        if path is None:
            raise BenchmarkError(f"tuned=true: there is no tuned file {default_path(cfg).relative_to(CONFIG_DIR.parent)}"
                                 f" (nor tuned/{file_name(cfg)}.yaml on config_path); make it with "
                                 f"{make_command(cfg)}, or run without tuned=true")
        return path
    path = Path(str(spec)).expanduser()
    if not path.is_file():
        raise BenchmarkError(f"tuned={spec} does not exist; pass a file written by `python -m benchmark tune` "
                             f"(tune.file=PATH), or tuned=true for {default_path(cfg).relative_to(CONFIG_DIR.parent)}")
    return path


@dataclass(frozen=True)
class Tuned:
    """One method's tuned values for one forget setting, and where they come from."""

    params: dict[str, Any]
    source: dict[str, Any]  # file, sha256, setting, study: what a record names


def tuned_layers(cfg: Any, methods: list[str], ratios: list[float | None], seeds: list[int]
                 ) -> dict[tuple[str, float | None], Tuned]:
    """``(method, ratio) -> Tuned`` for a run with ``tuned=...``; ``{}`` without.

    Raises:
        BenchmarkError: the file is missing or malformed; a tunable method (or one of the run's
            forget settings) has no entry; an entry was tuned on forget seeds the run reports;
            an entry's values are not the method's hyperparameters.
    """
    path = tuned_file(cfg)
    auto = cfg.get("tuned") == AUTO
    if path is None:
        if auto:
            _say(f"tuned=auto: no tuned file tuned/{file_name(cfg)}.yaml, so every method runs at its defaults "
                 f"(make one with {make_command(cfg)})")
        return {}
    try:
        return _layers(cfg, path, methods, ratios, seeds)
    except BenchmarkError as e:
        if not auto:
            raise
        _say(f"tuned=auto: every method runs at its defaults, because {e}")  # never a mixed table
        return {}


def _say(line: str) -> None:
    if line not in _said:
        _said.add(line)
        print(line, flush=True)


_said: set[str] = set()


def _layers(cfg: Any, path: Path, methods: list[str], ratios: list[float | None], seeds: list[int]
            ) -> dict[tuple[str, float | None], Tuned]:
    data = read(path)
    where = str(path)
    for key, want in (("dataset", cfg.dataset), ("model", cfg.model), ("scenario", cfg.forget.scenario)):
        if data.get(key) is not None and str(data[key]) != str(want):
            raise BenchmarkError(f"tuned file {where} was tuned for {key}={data[key]}, not {want}; pass the "
                                 f"matching file or make one with {make_command(cfg)}")
    digest = file_digest(path)
    out: dict[tuple[str, float | None], Tuned] = {}
    from benchmark.module import METHODS

    for m in methods:
        # a variant (an ablation) runs with its base's tuned values less the knobs it sets, so that
        # it differs from the tuned base in exactly those knobs, as it does at the defaults
        variant = hparams.variant_of(m)
        base, knobs = variant if variant else (m, set())
        for ratio in ratios:
            key = setting_key(cfg, ratio)
            entry = ((data.get("settings") or {}).get(key) or {}).get(base)
            if entry is None:
                if tunable(base):
                    raise BenchmarkError(f"tuned file {where} has no {base} for {key}; add it with "
                                         f"{make_command(cfg, f'tune.methods=[{base}]')}, or run without tuned=true")
                continue  # a reference row, a cheat, nothing to search: its defaults
            params = {k: v for k, v in entry["params"].items() if k not in knobs}
            hparams.check_keys(m, METHODS.get(m), params, f"tuned file {where} ({key})")
            overlap = sorted(set(int(s) for s in entry.get("forget_seeds") or []) & set(seeds))
            if overlap:
                raise BenchmarkError(f"tuned file {where}: {m} was tuned on forget seeds {overlap}, which this run "
                                     f"reports (seeds={list(seeds)}); report other seeds or retune with "
                                     "tune.forget_seeds disjoint from them")
            out[(m, ratio)] = Tuned(params, {"file": where, "sha256": digest, "setting": key,
                                             "study": entry.get("study"), **({"base": base} if variant else {})})
            resolved = hparams.resolve(m, cfg, tuned=params)
            _warn_if_stale(base, entry, where, {k: v for k, v in resolved.items() if k not in knobs})
    return out


_warned: set[tuple[str, str]] = set()


def _warn_if_stale(method: str, entry: dict[str, Any], where: str, resolved: dict[str, Any]) -> None:
    """One warning line when the method's code, search space or fixed hyperparameters changed since tuning."""
    from benchmark.module import METHODS

    notes = []
    fp = code_fingerprint(METHODS.get(method))["fingerprint"]
    if entry.get("code_fingerprint") not in (None, fp):
        notes.append(f"its code changed (fingerprint {entry['code_fingerprint']} -> {fp})")
    space = {k: list(v) for k, v in hparams.search_space(method).items()}
    if entry.get("search_space") is not None and entry["search_space"] != space:
        notes.append("its search_space changed")
    fixed = entry.get("fixed") or {}
    differ = sorted(k for k in fixed if k in resolved and k not in entry["params"] and fixed[k] != resolved[k])
    if differ:
        notes.append("it was tuned with " + ", ".join(f"{k}={fixed[k]}" for k in differ)
                     + " (now " + ", ".join(f"{k}={resolved[k]}" for k in differ) + ")")
    if notes and (method, where) not in _warned:
        _warned.add((method, where))
        print(f"warning: tuned {method} in {where}: {'; '.join(notes)}; retune with make tune", flush=True)


def write_entries(path: Path, cfg: Any, entries: dict[str, dict[str, dict[str, Any]]]) -> Path:
    """Merges ``{setting: {method: entry}}`` into the tuned file (other settings and methods are
    kept), under a lock, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path.with_name(f".{path.name}.lock"))):  # hidden, and ignored by git
        data = read(path) if path.exists() else {}
        data.update(dataset=str(cfg.dataset), model=str(cfg.model), scenario=str(cfg.forget.scenario))
        settings = data.setdefault("settings", {}) or {}
        data["settings"] = settings
        for key, methods in entries.items():
            settings.setdefault(key, {}).update(methods)
            settings[key] = dict(sorted(settings[key].items()))
        text = HEADER + yaml.dump(data, Dumper=_Dumper, sort_keys=False, default_flow_style=None, width=110)
        atomic_write_text(path, text)
    return path


class _Dumper(yaml.SafeDumper):
    """Safe YAML without anchors and aliases (``&id001``): every entry reads on its own."""

    def ignore_aliases(self, data: Any) -> bool:
        return True
