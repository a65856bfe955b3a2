"""``[qat]``: quantization-aware training settings (``QATOptions``) and the config the QAT fine-tune runs (``QATConfig``)."""
from __future__ import annotations

from dataclasses import dataclass

from ...options import Options, option, options

MAX_SAMPLES = 9_600  # the default fine-tune sees at most this many samples (4 epochs of 1,200; 1 of avnet's 9,600)


def default_epochs(samples: int, epochs: int = 4) -> int:
    """QAT's default length: ``epochs``, fewer on a large training split (at most MAX_SAMPLES samples seen, >= 1 epoch)."""
    return max(1, min(epochs, MAX_SAMPLES // max(1, samples)))


@dataclass(frozen=True)
class QATConfig:
    epochs: int = 4
    lr: float = 5e-5
    batch: int = 32
    temperature: float = 2.0
    label_weight: float = 0.5  # weight of the hard-label loss when labels are present
    symmetric_activations: bool = False  # True for TensorRT-style int8
    weight_bits: int = 8  # 7 where the deployed Q/DQ model uses 7-bit weights (CPU targets without VNNI: edgemm.cpu)
    seed: int = 0
    threads: int = 2


@options("qat")
class QATOptions(Options):
    """What a user sets of the QAT fine-tune (the rest follows from the targets and the machine: ``config``)."""

    epochs: int | None = option(None, ge=1, metavar="N", help="QAT fine-tune epochs (default 4, fewer on a large training "
                                                               "split: at most 9,600 samples seen)")
    lr: float = option(5e-5, gt=0, help="QAT fine-tune learning rate (default 5e-05)")
    batch: int = option(32, ge=1, help="QAT fine-tune batch size (default 32)")
    temperature: float = option(2.0, gt=0, help="distillation temperature (default 2)")
    label_weight: float = option(0.5, ge=0, le=1, help="weight of the hard-label loss where labels are given (default 0.5)")
    seed: int = option(0, ge=0, help="seed of the QAT fine-tune (default 0)")

    def config(self, *, symmetric_activations: bool, threads: int, weight_bits: int, samples: int) -> QATConfig:
        """The fine-tune's config: these settings plus what the targets and the machine decide."""
        return QATConfig(epochs=self.epochs or default_epochs(samples), lr=self.lr, batch=self.batch, temperature=self.temperature,
                         label_weight=self.label_weight, symmetric_activations=symmetric_activations,
                         weight_bits=weight_bits, seed=self.seed, threads=threads)
