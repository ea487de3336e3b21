"""The command line: ``python -m benchmark run|list ...``. The only place that parses argv."""

from __future__ import annotations

import argparse
import errno
import os
import signal
import sys
import threading
from typing import Any

from benchmark.errors import BenchmarkError

USAGE = """usage:
  python -m benchmark run [KEY=VALUE ...]        run the grid (configs/bench.yaml + overrides)
  python -m benchmark run sweep=NAME|PATH [--shard i/n] [KEY=VALUE ...]   a sweep file's grid (a slice of it)
  python -m benchmark list methods|datasets|models|metrics|presets [imports=[...]]
  python -m benchmark check METHOD [imports=[my_pkg.mod]]   the conformance checks of `make test`, on one method
  python -m benchmark report OUTPUT_DIR           leaderboard.md/.html and figures from results.jsonl
  python -m benchmark tune [KEY=VALUE ...]       tune every method's search_space (tune.* keys), equal budgets
examples:
  python -m benchmark run dataset=digits methods=[original,retrain,finetune] seeds=[0,1,2]
  python -m benchmark run preset=cifar10_cpu data.root=data/cifar10
  python -m benchmark tune dataset=digits tune.trials=20 && python -m benchmark run tuned=true
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
        from benchmark.generative.methods import GEN_METHODS
        from benchmark.hparams import signature_defaults
        from benchmark.module import METHODS

        for name, cls in METHODS.items():
            args = ", ".join(f"{k}={v}" for k, v in signature_defaults(cls).items())
            print(f"{name:<16} {cls.__module__}.{cls.__qualname__}({args})")
        print("task=generate (docs/protocol.md s.10):")
        for name, cls in GEN_METHODS.items():
            args = ", ".join(f"{k}={v}" for k, v in signature_defaults(cls).items())
            print(f"  {name:<14} {cls.__module__}.{cls.__qualname__}({args})")
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


def _run(args: list[str], command: str = "run") -> int:
    """``run`` (and ``tune``): SIGTERM (preemption, a Kubernetes shutdown) and SIGINT (Ctrl-C) stop it
    cleanly at any moment: the cell in flight is abandoned (nothing of it is written; a
    cell being written is finished first), one line says what was done and how to
    resume, and the status is 128 + the signal (143, 130), never 0."""
    from benchmark.io import Interrupted, on_signal, received_signal, reset_signal

    runners: list[Any] = []
    reset_signal()
    main_thread = threading.current_thread() is threading.main_thread()  # handlers can only be set there
    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)} if main_thread else {}
    try:
        if command == "tune":
            from benchmark.tune import tune

            reports = tune(args)  # a killed or interrupted tune resumes where it stopped
            return 0 if all(r.best is not None for r in reports) else 1
        from benchmark.config import compose_grid
        from benchmark.runner import Runner

        for cfg in compose_grid(args):  # every config checked before any work
            runners.append(Runner(cfg))
        records = [r for runner in runners for r in runner.run()]
        return 0 if all(r.get("status") in ("ok", "skipped") for r in records) else 1
    except (Interrupted, SystemExit, KeyboardInterrupt) as e:
        # Lightning turns a SIGTERM inside a fit into SystemExit (no code) and Ctrl-C into
        # sys.exit(1): the signal our handler recorded decides, not the exception
        signum = received_signal() or (signal.SIGINT if isinstance(e, KeyboardInterrupt) else None)
        if signum is None:
            raise
        for s in previous:  # a second signal must not cut the clean-up
            signal.signal(s, signal.SIG_IGN)
        _stop_children()
        line = (f"interrupted by {signal.Signals(signum).name}; finished trials are in the study storage, "
                "rerun the same command to resume" if command == "tune"
                else _interrupted_line(signal.Signals(signum).name, runners))
        print(line, file=sys.stderr, flush=True)
        return 128 + int(signum)
    except OSError as e:  # a full disk, a lost mount: one line, finished cells kept
        where = f" {e.filename}" if e.filename else ""
        full = e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
        print(f"error: {'cannot write' if full else 'file error at'}{where} ({e.strerror or e}); "
              f"{'free some space' if full else 'fix it'}, then rerun the same command to resume "
              "(finished cells are kept)", file=sys.stderr, flush=True)
        _stop_children()
        return 1
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _interrupted_line(name: str, runners: list[Any]) -> str:
    done = sum(r.finished for r in runners)
    total = sum(len(r.plan.todo) for r in runners)
    cut = [r.in_flight for r in runners if r.in_flight is not None]
    abandoned = (f" ({cut[0].method} ratio={cut[0].ratio} seed={cut[0].seed} abandoned, nothing written for it)"
                 if cut else "")
    files = sorted({str(r.out / "results.jsonl") for r in runners})
    where = f"finished cells are in {', '.join(files)}" if files else "no cell had started"
    return f"interrupted by {name} after {done} of {total} cells{abandoned}; {where}; rerun the same command to resume"


def _stop_children() -> None:
    """Ends the worker processes this process started (``ddp_spawn``), so exit never waits on them."""
    import multiprocessing

    children = multiprocessing.active_children()
    for p in children:
        p.terminate()
    for p in children:
        p.join(timeout=5)
        if p.is_alive():
            p.kill()
            p.join(timeout=5)


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
        if ns.command in ("run", "tune"):
            return _run(ns.args, ns.command)
        if ns.command == "report":
            from benchmark.report import write_leaderboard

            if len(ns.args) != 1:
                raise BenchmarkError("say which output directory to report on: python -m benchmark report outputs/digits")
            target = ns.args[0].removeprefix("output_dir=")  # the run's spelling works too
            for path in write_leaderboard(target):
                print(path)
            return 0
        if ns.command == "list":
            if not ns.args:
                raise BenchmarkError("say what to list: methods, datasets, models, metrics or presets")
            _list(ns.args[0], _imports(ns.args[1:]))
            return 0
        if ns.command == "check":
            return _check(ns.args)
        raise BenchmarkError(f"unknown command {ns.command!r}; use run, tune, list, check or report "
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
