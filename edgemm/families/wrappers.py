"""Export wrappers for models called with one named tensor (torch)."""
from __future__ import annotations

from .modules import FamilyModule, named_tensors


class InputValues(FamilyModule):
    """``model(input_values=waveform)`` (Wav2Vec2 and its heads), outputs named by the ModelOutput's keys."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def outputs(self, input_values):
        return named_tensors(self.model(input_values=input_values))

    def forward(self, input_values):
        return self.pick(self.outputs(input_values))


class InputFeatures(FamilyModule):
    """``encoder(input_features=log_mel)`` (Whisper's encoder), outputs named by the ModelOutput's keys."""

    def __init__(self, encoder):
        super().__init__()
        self.encoder = encoder

    def outputs(self, input_features):
        return named_tensors(self.encoder(input_features=input_features))

    def forward(self, input_features):
        return self.pick(self.outputs(input_features))


class PixelValues(FamilyModule):
    """``model(pixels)`` (a timm model): its one tensor named ``single`` (``logits``, or ``features`` without a head)."""

    def __init__(self, model, single: str):
        super().__init__()
        self.model = model
        self.single = single

    def outputs(self, pixel_values):
        return named_tensors(self.model(pixel_values), self.single)

    def forward(self, pixel_values):
        return self.pick(self.outputs(pixel_values))
