"""JSON that is JSON: ``json.dumps`` writes ``NaN``/``Infinity`` for non-finite floats, which no JSON parser
accepts; reports and ``--json-lines`` output go through ``finite_or_none`` first (non-finite -> null)."""
from __future__ import annotations

import math
from typing import Any


def finite_or_none(x: Any) -> Any:
    """JSON-safe copy: non-finite floats become None (``json.dumps`` writes ``NaN``, which is not JSON)."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: finite_or_none(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [finite_or_none(v) for v in x]
    return x


__all__ = ["finite_or_none"]
