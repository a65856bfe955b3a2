"""Library log output captured during a call: torch and friends log their own tracebacks before raising.

The CLI's contract is one line per error, so what those loggers (and Python warnings) print during a
library call is kept and re-logged on edgemm's logger at DEBUG (shown with ``-v``).
"""
from __future__ import annotations

import contextlib
import logging
import warnings
from typing import Iterator


@contextlib.contextmanager
def captured_library_logs(*names: str) -> Iterator[list[str]]:
    """Capture what ``names`` loggers (and Python warnings) print during a library call.

    Libraries such as torch log their own tracebacks before raising; the CLI's contract is one line,
    so the records are kept and re-logged on edgemm's logger at DEBUG (shown with ``-v``).
    """
    from .log import logger

    lines: list[str] = []

    class _Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            try:
                text = record.getMessage()
            except Exception:  # a library's malformed log call must not hide the real error
                text = str(record.msg)
            if record.exc_info and record.exc_info[1] is not None:
                text += f" ({type(record.exc_info[1]).__name__}: {record.exc_info[1]})"
            lines.append(f"{record.name}: {text}")

    handler = _Keep(logging.DEBUG)
    saved = []
    for lg in _loggers_under(names):
        saved.append((lg, lg.propagate, list(lg.handlers)))
        lg.handlers = [handler]
        lg.propagate = False
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield lines
    finally:
        for lg, propagate, handlers in saved:
            lg.handlers = handlers
            lg.propagate = propagate
        lines.extend(f"warning: {w.category.__name__}: {w.message}" for w in caught)
        for line in lines:
            logger.debug("%s", line)


def _loggers_under(names) -> list[logging.Logger]:
    """The loggers ``names`` and every existing logger below them that prints by itself.

    torch gives some of its loggers (``torch.export``, ``torch._dynamo`` ...) their own stderr handler with
    ``propagate = False``: capturing ``torch`` alone lets their records (a whole traceback) through.
    """
    found = [logging.getLogger(n) for n in names]
    for key, lg in list(logging.Logger.manager.loggerDict.items()):
        if isinstance(lg, logging.Logger) and any(key.startswith(n + ".") for n in names) and (lg.handlers or not lg.propagate):
            found.append(lg)
    return found


__all__ = ["captured_library_logs"]
