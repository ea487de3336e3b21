"""Metric value types: a number, or :class:`Undefined` with the reason why.

They have their own module so that the registry (``core``), the cached outputs
(``outputs``) and every metric can import them without importing each other.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np

from benchmark.errors import BenchmarkError


@dataclass(frozen=True)
class Undefined:
    """A metric value that does not exist, with the reason why.

    It is falsy, never equal to a number, and refuses ``float()`` so that it
    cannot turn into a NaN unnoticed. In a record it is written as ``None`` with
    its reason next to it (see :func:`split_values`).
    """

    reason: str

    def __bool__(self) -> bool:
        return False

    def __float__(self) -> float:
        raise TypeError(f"undefined metric value: {self.reason}")

    def to_json(self) -> dict[str, str | None]:
        """``{"value": None, "reason": ...}``."""
        return {"value": None, "reason": self.reason}


class NotedFloat(float):
    """A defined value that comes with a caveat (for example, an average over fewer terms).

    Behaves as a plain ``float`` (and serialises as one); :func:`split_values`
    moves the note into the record's reasons.
    """

    note: str

    def __new__(cls, value: float, note: str) -> NotedFloat:
        obj = super().__new__(cls, value)
        obj.note = note
        return obj


MetricValue: TypeAlias = "float | int | Undefined"


def is_defined(value: Any) -> bool:
    """True for a finite number; False for ``None``, :class:`Undefined`, NaN and inf."""
    if value is None or isinstance(value, Undefined | bool):
        return False
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False



def split_values(
    raw: Mapping[str, MetricValue | None],
) -> tuple[dict[str, float | int | None], dict[str, str]]:
    """Turns metric values into record form: ``(values, reasons)``.

    :class:`Undefined` becomes ``None`` with its reason; a :class:`NotedFloat`
    becomes a plain float with its note as the reason; a bare ``None`` gets the
    reason ``"no value"``. A NaN or inf is turned into ``None`` with a reason
    saying so, so a record never holds a non-finite number.
    """
    values: dict[str, float | int | None] = {}
    reasons: dict[str, str] = {}
    for key, v in raw.items():
        if isinstance(v, Undefined):
            values[key], reasons[key] = None, v.reason
        elif v is None:
            values[key], reasons[key] = None, "no value"
        elif isinstance(v, bool) or not isinstance(v, int | float | np.integer | np.floating):
            raise BenchmarkError(f"metric {key!r} returned {type(v).__name__}, expected a number")
        elif not math.isfinite(float(v)):
            values[key] = None
            reasons[key] = f"evaluated to {float(v)} (non-finite; reported as undefined)"
        else:
            values[key] = int(v) if isinstance(v, int | np.integer) else float(v)
            if isinstance(v, NotedFloat):
                reasons[key] = v.note
    return values, reasons
