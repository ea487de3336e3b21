import json

import numpy as np
import pytest

from benchmark.data.splits import make_split
from benchmark.errors import BenchmarkError

LABELS = np.repeat(np.arange(10), 100)  # 1000 examples, 10 balanced classes


def _disjoint(s):
    assert len(np.intersect1d(s.forget, s.retain)) == 0
    assert len(np.intersect1d(s.train, s.val)) == 0
    np.testing.assert_array_equal(np.union1d(s.forget, s.retain), s.train)


def test_random_split_is_deterministic_disjoint_and_sized():
    a = make_split(LABELS, "random", 0.1, seed=3)
    b = make_split(LABELS, "random", 0.1, seed=3)
    c = make_split(LABELS, "random", 0.1, seed=4)
    assert a.sha256 == b.sha256 and a.sha256 != c.sha256
    np.testing.assert_array_equal(a.forget, b.forget)
    _disjoint(a)
    assert len(a.val) == 100 and len(a.train) == 900 and len(a.forget) == 90
    # D_val is stratified and the same for every seed (it is held out first)
    assert np.all(np.bincount(LABELS[a.val]) == 10)
    np.testing.assert_array_equal(a.val, c.val)


def test_class_split_takes_whole_classes():
    s = make_split(LABELS, "class", None, seed=0, classes=[2, 7])
    _disjoint(s)
    assert set(LABELS[s.forget]) == {2, 7} and not ({2, 7} & set(LABELS[s.retain]))
    r = make_split(LABELS, "class", 0.3, seed=1)
    assert len(r.forget_classes) == 3


def test_subclass_split_thins_one_class():
    s = make_split(LABELS, "subclass", 0.5, seed=0, classes=[4])
    _disjoint(s)
    assert set(LABELS[s.forget]) == {4}
    assert len(s.forget) == 45  # half of class 4's 90 training examples


def test_train_subset_is_stratified_and_seeded():
    s = make_split(LABELS, "random", 0.1, seed=0, train_subset=200)
    assert len(s.train) + len(s.val) == 200
    assert np.all(np.bincount(LABELS[np.concatenate([s.train, s.val])]) == 20)
    assert make_split(LABELS, "random", 0.1, seed=9, train_subset=200).val.tolist() == s.val.tolist()


def test_indices_scenario_reads_user_file(tmp_path):
    base = make_split(LABELS, "random", 0.1, seed=0)
    chosen = base.train[:17]
    for name, writer in [("f.npy", lambda p: np.save(p, chosen)),
                         ("f.json", lambda p: p.write_text(json.dumps(chosen.tolist()))),
                         ("f.txt", lambda p: p.write_text("\n".join(map(str, chosen))))]:
        path = tmp_path / name
        writer(path)
        s = make_split(LABELS, "indices", None, seed=0, indices_file=str(path))
        np.testing.assert_array_equal(s.forget, np.sort(chosen))
        _disjoint(s)


def test_indices_in_validation_are_rejected(tmp_path):
    base = make_split(LABELS, "random", 0.1, seed=0)
    path = tmp_path / "bad.txt"
    path.write_text(str(base.val[0]))
    with pytest.raises(BenchmarkError, match="validation hold-out"):
        make_split(LABELS, "indices", None, seed=0, indices_file=str(path))


@pytest.mark.parametrize("ratio", [0.0, 1.0, 1.5, -0.1])
def test_ratio_outside_unit_interval_fails(ratio):
    with pytest.raises(BenchmarkError, match=r"outside \(0, 1\)"):
        make_split(LABELS, "random", ratio, seed=0)


def test_saved_split_round_trips(tmp_path):
    s = make_split(LABELS, "random", 0.2, seed=1)
    path = s.save(tmp_path)
    z = np.load(path)
    np.testing.assert_array_equal(z["forget"], s.forget)
    assert json.loads(str(z["meta"]))["sha256"] == s.sha256
    assert path.name.startswith(s.sha256[:16])


# ------------------------------------------------------------------ identity at the defaults
@pytest.mark.parametrize("args,kw,sha", [
    (("random", 0.1, 3), {}, "6c09c9ec8f763c6d35d995c0f19b5d3983fc79a2cca431463705d4c85c008d3b"),
    (("class", None, 0), {"classes": [2, 7]}, "1f6f851fce0cf0d2fa1ff09a3b3a5ebe2b624fb94abe28e228402fd24cff68eb"),
    (("subclass", 0.5, 1), {"classes": [4], "train_subset": 500},
     "e5038db9b96cbb788832a0ac24322a489838b6643634f8c38e6ce1e6b3b2d9ef"),
])
def test_split_hashes_at_the_defaults_are_pinned(args, kw, sha):
    """A split's hash names its cached references and outputs; at the defaults it must never
    move (these were computed before val_fraction and retain_file existed)."""
    assert make_split(LABELS, *args, **kw).sha256 == sha
    assert make_split(LABELS, *args, **kw, val_fraction=0.1, retain_file=None).sha256 == sha


# ------------------------------------------------------------------ val_fraction
def test_val_fraction_zero_means_no_validation_split():
    s = make_split(LABELS, "random", 0.1, seed=0, val_fraction=0)
    assert len(s.val) == 0 and s.val.dtype == np.int64
    assert len(s.train) == 1000 and len(s.forget) == 100
    _disjoint(s)
    assert s.sha256 != make_split(LABELS, "random", 0.1, seed=0).sha256
    assert s.base_sha256 != make_split(LABELS, "random", 0.1, seed=0).base_sha256  # the original differs too


def test_val_fraction_sizes_a_stratified_hold_out():
    s = make_split(LABELS, "random", 0.1, seed=0, val_fraction=0.2)
    assert len(s.val) == 200 and np.all(np.bincount(LABELS[s.val]) == 20)
    _disjoint(s)


@pytest.mark.parametrize("bad", [-0.1, 1.0, 2, "x", None, float("nan"), True])
def test_bad_val_fraction_fails_in_one_line(bad):
    with pytest.raises(BenchmarkError, match=r"data\.val_fraction") as e:
        make_split(LABELS, "random", 0.1, seed=0, val_fraction=bad)
    assert "\n" not in str(e.value)


def test_without_validation_every_index_may_be_forgotten(tmp_path):
    base = make_split(LABELS, "random", 0.1, seed=0)
    path = tmp_path / "f.txt"
    path.write_text(str(base.val[0]))  # in D_val at the default, in D without one
    s = make_split(LABELS, "indices", None, seed=0, indices_file=str(path), val_fraction=0)
    assert s.forget.tolist() == [base.val[0]]


# ------------------------------------------------------------------ retain_file
def _files(tmp_path, forget, retain, suffix=".npy"):
    f, r = tmp_path / f"forget{suffix}", tmp_path / f"retain{suffix}"
    for path, arr in ((f, forget), (r, retain)):
        if suffix == ".npy":
            np.save(path, np.asarray(arr))
        elif suffix == ".json":
            path.write_text(json.dumps(list(arr)))
        else:
            path.write_text("\n".join(map(str, arr)))
    return str(f), str(r)


@pytest.mark.parametrize("suffix", [".npy", ".json", ".txt"])
def test_retain_file_defines_d_r_and_d_is_the_union(tmp_path, suffix):
    forget, retain = [5, 1, 3], [10, 2, 40, 7]
    f, r = _files(tmp_path, forget, retain, suffix)
    s = make_split(LABELS, "indices", None, seed=0, indices_file=f, retain_file=r, val_fraction=0)
    assert s.forget.tolist() == [1, 3, 5] and s.retain.tolist() == [2, 7, 10, 40]
    assert s.train.tolist() == [1, 2, 3, 5, 7, 10, 40]
    _disjoint(s)


def test_retain_file_is_in_the_split_hash_and_the_default_is_d_minus_d_f(tmp_path):
    base = make_split(LABELS, "random", 0.1, seed=0)
    forget = base.train[:10]
    rest = np.setdiff1d(base.train, forget)
    f, r_all = _files(tmp_path, forget, rest)
    plain = make_split(LABELS, "indices", None, seed=0, indices_file=f)
    same = make_split(LABELS, "indices", None, seed=0, indices_file=f, retain_file=r_all)
    assert same.sha256 == plain.sha256  # the same arrays: the same split
    np.save(tmp_path / "part.npy", rest[:-1])
    part = make_split(LABELS, "indices", None, seed=0, indices_file=f, retain_file=str(tmp_path / "part.npy"))
    assert part.sha256 != plain.sha256 and part.base_sha256 != plain.base_sha256


@pytest.mark.parametrize("retain,match", [
    ([4, 5, 6], r"1 indices \(e\.g\. 5\) are also in forget\.indices_file; D_f and D_r must be disjoint"),
    ([6, 1000], r"forget\.retain_file .*: indices must lie in 0\.\.999"),
    ([6, -1], r"indices must lie in 0\.\.999"),
    ([6, 7, 7], r"1 indices appear more than once \(e\.g\. 7\)"),
    ([6.0, 7.5], r"holds float64 values, not integer indices"),
    ([], r"holds no index"),
])
def test_bad_retain_file_fails_in_one_line(tmp_path, retain, match):
    f, r = _files(tmp_path, [1, 5], retain)
    if not retain:
        np.save(r, np.zeros(0, dtype=np.int64))
    with pytest.raises(BenchmarkError, match=match) as e:
        make_split(LABELS, "indices", None, seed=0, indices_file=f, retain_file=r, val_fraction=0)
    assert "\n" not in str(e.value)


def test_retain_file_in_validation_or_without_indices_scenario_fails(tmp_path):
    base = make_split(LABELS, "random", 0.1, seed=0)
    f, r = _files(tmp_path, base.train[:3], [base.val[0]])
    with pytest.raises(BenchmarkError, match=r"forget\.retain_file .* validation hold-out.*data\.val_fraction=0"):
        make_split(LABELS, "indices", None, seed=0, indices_file=f, retain_file=r)
    with pytest.raises(BenchmarkError, match=r"only read with forget\.scenario=indices"):
        make_split(LABELS, "random", 0.1, seed=0, retain_file=r)
    with pytest.raises(BenchmarkError, match=r"missing\.npy does not exist"):
        make_split(LABELS, "indices", None, seed=0, indices_file=f, retain_file=str(tmp_path / "missing.npy"))


def test_forget_file_gets_the_same_checks(tmp_path):
    """Duplicates and non-integers were silently deduplicated and truncated before."""
    for bad, match in (([3, 3], "more than once"), ([1.5], "not integer indices"), ([True], "not integer")):
        path = tmp_path / "f.json"
        path.write_text(json.dumps(bad))
        with pytest.raises(BenchmarkError, match=match):
            make_split(LABELS, "indices", None, seed=0, indices_file=str(path), val_fraction=0)
