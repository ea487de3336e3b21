"""The command line: ``python -m benchmark run|list ...``. The only place that parses argv."""

from __future__ import annotations

import argparse
import os
import sys

from benchmark.errors import BenchmarkError

USAGE = """usage:
  python -m benchmark run [KEY=VALUE ...]        run the grid (configs/bench.yaml + overrides)
  python -m benchmark run sweep=NAME|PATH [--shard i/n] [KEY=VALUE ...]   a sweep file's grid (a slice of it)
  python -m benchmark list methods|datasets|models|metrics|presets [imports=[...]]
  python -m benchmark check METHOD [imports=[my_pkg.mod]]   the conformance checks of `make test`, on one method
  python -m benchmark report OUTPUT_DIR           leaderboard.md/.html and figures from results.jsonl
examples:
  python -m benchmark run dataset=digits methods=[original,retrain,finetune] seeds=[0,1,2]
  python -m benchmark run preset=cifar10_cpu data.root=data/cifar10
"""


def _imports(args: list[str]) -> list[str]:
    from benchmark.config import parse_overrides

    extra = [a for a in args if "=" in a]
    unknown = [a.split("=", 1)[0] for a in extra if a.split("=", 1)[0] != "imports"]
    if unknown:
        raise BenchmarkError(f"unknown option {unknown[0]!r}; only imports=[module,...] is taken here")
    return [str(i) for i in (parse_overrides(extra).get("imports") or [])] if extra else []


def _list(what: str, imports: list[str]) -> None:
    from benchmark.config import (
        import_user_modules,
        register_method_variants,
        search_path,
        set_search_path,
    )

    import_user_modules(imports)
    set_search_path([], imports)
    register_method_variants()
    if what == "methods":
        from benchmark.hparams import signature_defaults
        from benchmark.module import METHODS

        for name, cls in METHODS.items():
            args = ", ".join(f"{k}={v}" for k, v in signature_defaults(cls).items())
            print(f"{name:<16} {cls.__module__}.{cls.__qualname__}({args})")
        return
    if what == "metrics":
        from benchmark.metrics import METRICS

        for name, m in METRICS.items():
            needs = ",".join(r for r in m.requires if r != "outputs") or "-"
            print(f"{name:<34} {m.direction:<7} needs {needs:<10} {m.summary}")
        return
    if what == "presets":
        for p in sorted({p.stem for d in search_path() for p in d.glob("preset/*.yaml")}):
            print(p)
        return
    if what == "datasets":
        from benchmark.data import DATASETS as reg
    elif what == "models":
        from benchmark.models import MODELS as reg
    else:
        raise BenchmarkError(f"cannot list {what!r}; use methods, datasets, models, metrics or presets")
    for name in reg.names():
        print(name)


def _check(args: list[str]) -> int:
    from benchmark.config import import_user_modules, register_method_variants, set_search_path
    from benchmark.conformance import check_method
    from benchmark.module import METHODS

    names = [a for a in args if "=" not in a]
    if len(names) != 1:
        raise BenchmarkError("say which method to check: python -m benchmark check METHOD [imports=[my_pkg.mod]]")
    imports = _imports(args)
    import_user_modules(imports)
    set_search_path([], imports)
    register_method_variants()
    METHODS.get(names[0])
    checks = check_method(names[0])
    for c in checks:
        print(f"{'PASS' if c.passed else 'FAIL'}  {c.name}" + (f": {c.detail}" if c.detail else ""))
    failed = [c for c in checks if not c.passed]
    print(f"{names[0]}: {len(checks) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # `--shard i/n` is the same as `shard=i/n`
    for flag in ("--shard", "--sweep"):
        while flag in argv:
            i = argv.index(flag)
            value = argv[i + 1] if i + 1 < len(argv) else ""
            argv[i:i + 2] = [f"{flag[2:]}={value}"]
        argv = [f"{a[2:]}" if a.startswith(f"{flag}=") else a for a in argv]
    parser = argparse.ArgumentParser(prog="python -m benchmark", usage=USAGE, add_help=False)
    parser.add_argument("command", nargs="?")
    parser.add_argument("args", nargs="*")
    parser.add_argument("-h", "--help", action="store_true")
    ns = parser.parse_args(argv)
    if ns.help or not ns.command:
        print(USAGE)
        return 0
    try:
        if ns.command == "run":
            from benchmark.config import compose_grid
            from benchmark.runner import Runner

            runners = [Runner(cfg) for cfg in compose_grid(ns.args)]  # every config checked before any work
            records = [r for runner in runners for r in runner.run()]
            return 0 if all(r.get("status") in ("ok", "skipped") for r in records) else 1
        if ns.command == "report":
            from benchmark.report import write_leaderboard

            if len(ns.args) != 1:
                raise BenchmarkError("say which output directory to report on: python -m benchmark report outputs/digits")
            for path in write_leaderboard(ns.args[0]):
                print(path)
            return 0
        if ns.command == "list":
            if not ns.args:
                raise BenchmarkError("say what to list: methods, datasets, models, metrics or presets")
            _list(ns.args[0], _imports(ns.args[1:]))
            return 0
        if ns.command == "check":
            return _check(ns.args)
        raise BenchmarkError(f"unknown command {ns.command!r}; use run, list, check or report "
                             "(see python -m benchmark --help)")
    except BenchmarkError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; finished cells are in results.jsonl, rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    os.environ.setdefault("WANDB_SILENT", "true")
    sys.exit(main())
