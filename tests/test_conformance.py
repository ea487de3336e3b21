"""Every registered method, built from its resolved defaults, on tiny data: a new baseline gets
these for free (the same checks as `python -m benchmark check METHOD`)."""

from __future__ import annotations

import pytest

from benchmark.conformance import check_method
from benchmark.module import METHODS, UnlearnModule


@pytest.mark.parametrize("name", METHODS.names())
def test_method_conforms(name):
    failed = [f"{c.name}: {c.detail}" for c in check_method(name) if not c.passed]
    assert not failed, failed


def test_conformance_covers_every_registered_method():
    assert len(METHODS.names()) >= 17
    assert all(issubclass(METHODS.get(n), UnlearnModule) for n in METHODS.names())
