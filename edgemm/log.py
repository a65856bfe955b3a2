"""Logging: one ``edgemm`` logger; progress lines for long steps go to stderr."""
from __future__ import annotations

import logging
import sys
import time
from contextlib import contextmanager

logger = logging.getLogger("edgemm")


def set_verbosity(level: int = logging.INFO) -> None:
    if not any(getattr(h, "_edgemm", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler._edgemm = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel(level)


@contextmanager
def step(message: str):
    """Log ``message ...`` then ``done (1.2s)`` around a long step."""
    logger.info("%s ...", message)
    t0 = time.perf_counter()
    yield
    logger.info("  done (%.1fs)", time.perf_counter() - t0)
