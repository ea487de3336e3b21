"""Fuzzing the command line: any override of any config key gives a valid run or one line.

Overrides are drawn from a grammar of hostile values (wrong types, out of range, NaN, inf,
empty, unbalanced brackets, duplicates, huge numbers, non-ASCII, negative) for every key of
``configs/bench.yaml`` (and the dataset and method keys). Valid draws are never run: only
``benchmark.schema.check_run`` sees them. Invalid ones go through ``benchmark.cli.main`` and
must exit 2 with exactly one ``error: `` line on stderr, no traceback, nothing written.

Profiles: ``default`` (300 examples, in ``make test``) and ``nightly`` (5,000), selected
with ``HYPOTHESIS_PROFILE=nightly``.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from omegaconf import DictConfig, OmegaConf

import benchmark.runner
from benchmark.cli import main
from benchmark.errors import BenchmarkError
from benchmark.schema import check_run

ROOT = Path(__file__).resolve().parent.parent

settings.register_profile("default", max_examples=300, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("nightly", max_examples=5000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


def _leaves(node: DictConfig, prefix: str = "") -> list[str]:
    out = []
    for k, v in node.items():
        key = f"{prefix}{k}"
        out += _leaves(v, key + ".") if isinstance(v, DictConfig) and v else [key]
    return out


_BENCH = OmegaConf.load(ROOT / "configs" / "bench.yaml")
_DIGITS = OmegaConf.load(ROOT / "configs" / "dataset" / "digits.yaml")
_DIGITS.pop("overrides")
KEYS = sorted(set(_leaves(_BENCH)) | {f"data.{k}" for k in _leaves(_DIGITS)}
              | {f"method_args.{m}.{k}" for m in ("finetune", "ieu", "scrub", "ssd")
                 for k in ("lr", "epochs", "batch_size", "optimizer", "scheduler", "alpha", "momentum")
                 if not (m == "ssd" and k not in ("alpha", "batch_size"))}
              | {"method_defaults.batch_size", "method_defaults.lr", "method_defaults.weight_decay",
                 "attack.attacker_args.sgd.lr", "attack.attacker_args.adam.batch_size"}
              - {"output_dir", "cache_dir"})  # drawn separately, inside the temp dir

SCALARS = ["abc", "true", "false", "null", "~", "0", "1", "-1", "-5", "2", "3", "2.5", "0.1", "0.05", "0.999",
           "1.0", "1e400", "-1e400", ".inf", "-.inf", ".nan", "nan", "inf", "4294967295", "4294967296",
           "99999999999999999999999", "-0", "1e-3", "ñ", "日本", "é", "'  '", "''", "all", "sgd", "cosine",
           "32-true", "bf16-mixed", "auto", "cpu", "digits", "finetune", "random", "class", "0/4", "3/2", "1/0",
           "${dataset}", "${nope}", "\\x00", "[", "]", "{", "}", ",", "a,b", "[0", "0]", "{a", "[[0]]",
           "[]", "{}", "[0]", "[0,0]", "[0,1]", "[-1]", "[0.1]", "[0.1,0.1]", "[0.1,0.3]", "[2.5]", "[3]",
           "[11]", "[1,2]", "[abc]", "[ñ]", "[4294967296]", "[.nan]", "[.inf]", "[sgd]", "[sgd,sgd]", "[finetune]",
           "[null]", "[true]", "{a: 1}", "[0,[1]]", "[0.1,0.999]", ""]

values = st.one_of(
    st.sampled_from(SCALARS),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.lists(st.sampled_from(["0", "1", "-1", "0.1", "0.5", "abc", "ñ", ".nan", "3", "3"]), max_size=4)
      .map(lambda xs: "[" + ",".join(xs) + "]"),
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=8),
)
keys = st.one_of(st.sampled_from(KEYS), st.sampled_from(KEYS).map(lambda k: k + "x"))
overrides = st.lists(st.tuples(keys, values).map(lambda kv: f"{kv[0]}={kv[1]}"), min_size=1, max_size=3)
flags = st.sampled_from([[], ["--shard"], ["--shard", "0/2"], ["--shard", "x"], ["--sweep"], ["--sweep", "digits"]])
dirs = st.sampled_from(["ok", "file", "file/sub", "empty", "null", "ro"])


class _NeverRun:
    """Stands in for the runner: a fuzzed command line must never get to run anything."""

    def __init__(self, cfg):
        raise AssertionError("a fuzzed command line reached the runner")


def _dir_args(tmp: Path, which: str) -> list[str]:
    (tmp / "afile").write_text("x")
    cache = {"ok": tmp / "cache", "file": tmp / "afile", "file/sub": tmp / "afile" / "sub", "empty": "",
             "null": "null", "ro": "/proc/sys/unlearn"}[which]
    return [f"output_dir={tmp}/out", f"cache_dir={cache}", "logger=none"]


@given(args=overrides, flag=flags, cache=dirs, order=st.booleans())
def test_hostile_overrides_give_one_line_or_a_valid_config(args, flag, cache, order, monkeypatch_module):
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        argv = [*_dir_args(tmp, cache), *args] if order else [*args, *_dir_args(tmp, cache)]
        out, err = io.StringIO(), io.StringIO()
        try:
            with contextlib.redirect_stdout(out):
                check_run(argv if not flag else [*argv, f"{flag[0][2:]}={flag[1] if len(flag) > 1 else ''}"])
            valid = True
        except BenchmarkError as e:
            assert "\n" not in str(e), str(e)
            valid = False
        if not valid:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                code = main(["run", *argv, *flag])
            text = err.getvalue()
            assert code == 2, (argv, flag, text)
            assert text.startswith("error: ") and text.count("\n") == 1, (argv, flag, text)
            assert "Traceback" not in text
        assert sorted(p.name for p in tmp.iterdir()) == ["afile"], "a file was written"  # no record, no cache


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(benchmark.runner, "Runner", _NeverRun)
        mp.chdir(tempfile.mkdtemp())  # relative output_dir/cache_dir values land nowhere that matters
        yield mp
