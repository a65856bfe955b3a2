"""Recipe pieces for the torchrun tests (module level: the launched ranks import them by name).

``dying``: the tiny attention model of tests/prune whose training forward passes end the process of one
rank (``EDGEMM_TEST_DIE_RANK``) with a signal (``EDGEMM_TEST_DIE_SIGNAL``, default SIGKILL) at its
``EDGEMM_TEST_DIE_AT``-th call: a rank dying in the middle of the fine-tune's collectives.
``failing_training``: a [data.training] generator that raises on one rank only.
"""
from __future__ import annotations

import os
import signal

from prune_tiny import RECIPE, TinyAttnAV, generated_training

_CALLS = [0]


class Dying(TinyAttnAV):
    def forward(self, image, audio):
        if self.training and os.environ.get("RANK") == os.environ.get("EDGEMM_TEST_DIE_RANK"):
            _CALLS[0] += 1
            if _CALLS[0] == int(os.environ.get("EDGEMM_TEST_DIE_AT", "3")):
                os.kill(os.getpid(), getattr(signal, os.environ.get("EDGEMM_TEST_DIE_SIGNAL", "SIGKILL")))
        return super().forward(image, audio)


def dying() -> Dying:
    return Dying()


def failing_training(n: int = 64, fail_rank: str = "1") -> dict:
    if os.environ.get("RANK") == fail_rank:
        raise ValueError(f"no training data on rank {fail_rank} (a test)")
    return generated_training(n=n)


def recipe(factory: str = "prune_tiny:TinyAttnAV", training: str = 'generator = "prune_tiny:generated_training"\nn = 96') -> str:
    """The tiny model's recipe with an evaluation file (eval.npz beside it) and a [data.training] table."""
    text = RECIPE.format(name="tiny", factory="FACTORY").replace('"prune_tiny:FACTORY"', f'"{factory}"')
    return (text + '\n[data]\nevaluation = "eval.npz"\ncalibration = "eval.npz"\n\n'
            "[data.training]\n" + training + "\n")
