import pytest

from benchmark.errors import BenchmarkError
from benchmark.module import METHODS, UnlearnModule
from benchmark.registry import Registry


def test_duplicate_name_fails():
    reg = Registry("thing")
    reg.register("a")(lambda: 1)
    with pytest.raises(BenchmarkError, match="duplicate thing name 'a'"):
        reg.register("a")(lambda: 2)


def test_unknown_name_did_you_mean_and_list():
    reg = Registry("method")
    for n in ("scrub", "salun", "finetune"):
        reg.register(n)(object)
    with pytest.raises(BenchmarkError) as e:
        reg.get("scurb")
    msg = str(e.value)
    assert msg == "unknown method 'scurb'; did you mean 'scrub'? available: finetune, salun, scrub"
    assert "\n" not in msg


def test_unknown_name_without_close_match_still_lists():
    reg = Registry("dataset")
    reg.register("digits")(object)
    with pytest.raises(BenchmarkError, match=r"unknown dataset 'zzz'; available: digits"):
        reg.get("zzz")


def test_base_class_check():
    reg = Registry("method", base=UnlearnModule)
    with pytest.raises(BenchmarkError, match="subclass of UnlearnModule"):
        reg.register("bad")(int)


def test_method_keys_are_module_names():
    assert {"original", "retrain", "finetune", "grad_ascent"} <= set(METHODS.names())
    assert METHODS.get("grad_ascent").__name__ == "GradAscent"
