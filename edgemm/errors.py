"""Error types.

``EdgemmError`` is a *user* error: bad input, missing data, unavailable backend. The CLI prints
its message as one line and exits with code 2. Anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import difflib
from typing import Iterable


class EdgemmError(Exception):
    """A user-facing error: one line naming the problem and the fix."""

    def __init__(self, message: str):
        # Keep it one line: the CLI prints str(err) verbatim.
        super().__init__(" ".join(str(message).split()))


class SpecError(EdgemmError):
    """Feeds or data that do not match the model's IOSpec."""


class RecipeError(EdgemmError):
    """A recipe (TOML) that cannot be used as written."""


class BundleError(EdgemmError):
    """A bundle directory that is missing, corrupt or tampered with."""


class BackendUnavailable(EdgemmError):
    """A backend whose library is not installed or whose device is absent."""


class UnsupportedFeature(EdgemmError):
    """A request edgemm cannot serve (yet) on this backend/artifact."""


class ParityError(EdgemmError):
    """An artifact that does not compute what the reference model computes."""


def close_match_hint(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` when ``word`` looks like a typo of one of ``choices``."""
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{match[0]}'?)" if match else ""
