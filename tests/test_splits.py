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
