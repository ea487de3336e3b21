"""The command line: ``python -m benchmark run|list ...``. The only place that parses argv."""

from __future__ import annotations

import argparse
import os
import sys

from benchmark.errors import BenchmarkError

USAGE = """usage:
  python -m benchmark run [KEY=VALUE ...]        run the grid (configs/bench.yaml + overrides)
  python -m benchmark run sweep=NAME [--shard i/n] [KEY=VALUE ...]   a configs/sweep/NAME.yaml grid (a slice of it)
  python -m benchmark list methods|datasets|models|metrics|presets
  python -m benchmark report OUTPUT_DIR           leaderboard.md/.html and figures from results.jsonl
examples:
  python -m benchmark run dataset=digits methods=[original,retrain,finetune] seeds=[0,1,2]
  python -m benchmark run preset=cifar10_cpu data.root=data/cifar10
"""


def _list(what: str, imports: list[str]) -> None:
    from benchmark.config import CONFIG_DIR
    from benchmark.runner import import_user_modules

    import_user_modules(imports)
    if what == "methods":
        from benchmark.module import METHODS as reg
    elif what == "datasets":
        from benchmark.data import DATASETS as reg
    elif what == "models":
        from benchmark.models import MODELS as reg
    elif what == "metrics":
        from benchmark.metrics import metric_directions

        for k, d in sorted(metric_directions().items()):
            print(f"{k:<28} {d}")
        return
    elif what == "presets":
        for p in sorted(CONFIG_DIR.glob("preset/*.yaml")):
            print(p.stem)
        return
    else:
        raise BenchmarkError(f"cannot list {what!r}; use methods, datasets, models, metrics or presets")
    for name in reg.names():
        print(name)


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
            imports = [a.split("=", 1)[1].strip("[]").split(",") for a in ns.args[1:] if a.startswith("imports=")]
            _list(ns.args[0], [i for group in imports for i in group if i])
            return 0
        raise BenchmarkError(f"unknown command {ns.command!r}; use run, list or report (see python -m benchmark --help)")
    except BenchmarkError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; finished cells are in results.jsonl, rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    os.environ.setdefault("WANDB_SILENT", "true")
    sys.exit(main())
