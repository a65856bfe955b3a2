"""The state file of a matrix run (``matrix.state.json`` in the output folder, next to the report).

It records, per cell, the bundle gathered into the output folder (``build_key``: what it was built from)
and the finished row (``measure_key``: how it was measured). A rerun of the same plan skips the cells
whose row is finished (``ok``, ``over-budget``) under the same keys, and measures again, without
rebuilding, the cells whose bundle is already gathered: after a node is lost, only the missing cells run.
One run at a time per output folder (a lock beside the state file).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from ..errors import ConfigError
from .plan import Cell

STATE = "matrix.state.json"
LOCK = ".matrix.lock"
FINISHED = ("ok", "over-budget")


class State:
    def __init__(self, output: Path, fresh: bool = False):
        self.output = output
        self.path = output / STATE
        self.data: dict = {"format": 1, "cells": {}}
        self._lock_fd = None
        if self.path.is_file() and not fresh:
            try:
                self.data = json.loads(self.path.read_text())
            except (OSError, ValueError) as exc:
                raise ConfigError(f"the matrix state file {self.path} cannot be read ({exc}); delete it (every cell runs "
                                  "again) or rerun with --fresh") from None
            if not isinstance(self.data, dict) or not isinstance(self.data.get("cells"), dict):
                raise ConfigError(f"{self.path} is not a matrix state file; delete it or rerun with --fresh")

    def __enter__(self) -> "State":
        import fcntl

        self.output.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(self.output / LOCK, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self._lock_fd)
            self._lock_fd = None
            raise ConfigError(f"another edgemm matrix is running with the output folder {self.output}; wait for it, "
                              "or give this one another -o") from None
        return self

    def __exit__(self, *exc) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
            try:
                (self.output / LOCK).unlink()
            except OSError:
                pass

    def _entry(self, cell: Cell) -> dict:
        return self.data["cells"].setdefault(cell.id, {})

    def finished(self, cell: Cell) -> dict | None:
        """The cell's recorded row when it is finished under the plan's current keys."""
        e = self.data["cells"].get(cell.id) or {}
        row = e.get("row")
        if row and e.get("measure_key") == cell.measure_key and row.get("status") in FINISHED:
            return row
        return None

    def built(self, cell: Cell) -> dict | None:
        """What the build of the cell's gathered bundle returned, when the bundle is still there under the same key."""
        e = self.data["cells"].get(cell.id) or {}
        b = e.get("built")
        if b and e.get("build_key") == cell.build_key and (self.output / cell.folder / "manifest.json").is_file():
            return {**b, "path": str(self.output / cell.folder)}
        return None

    def record_built(self, cell: Cell, built: dict) -> None:
        e = self._entry(cell)
        e.update(build_key=cell.build_key, built={k: v for k, v in built.items() if k not in ("archive", "path")})
        e.pop("row", None)
        self.save()

    def record_row(self, cell: Cell, row: dict) -> None:
        e = self._entry(cell)
        e.update(measure_key=cell.measure_key, row=row)
        self.save()

    def save(self) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(self.data, indent=1, default=str) + "\n")
        os.replace(tmp, self.path)
