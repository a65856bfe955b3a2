"""Hugging Face Wav2Vec2: the raw waveform (``input_values``, one window of ``window_s`` seconds at the feature
extractor's sampling rate) -> ``last_hidden_state`` (the base model) or the head's ``logits``."""
from __future__ import annotations

from dataclasses import replace

from ...iospec import TensorSpec
from ... import layout
from ..base import AttentionPattern, Family, FamilyGraph, hf_model_type, mro_names
from ..folder import ModelFolder
from ..hf import load_pretrained
from ..preprocessing import audio_from_extractor

WINDOW_S = 1.0  # seconds of audio per inference: the input's fixed length


class Wav2Vec2Family(Family):
    name = "hf-wav2vec2"
    description = "Hugging Face Wav2Vec2 (raw waveform input_values -> last_hidden_state, or a head's logits)"
    model_types = ("wav2vec2",)
    library = "transformers"
    attention = (AttentionPattern(("Wav2Vec2Attention",)),)

    def recognises_module(self, obj) -> bool:
        return hf_model_type(obj) == "wav2vec2"

    def load(self, folder: ModelFolder):
        arch = next((a for a in folder.architectures if a.startswith("Wav2Vec2")), "Wav2Vec2Model")
        return load_pretrained(arch, folder, "Hugging Face Wav2Vec2")

    def graphs(self, model, folder: ModelFolder | None) -> dict[str, FamilyGraph]:
        from ..wrappers import InputValues
        from ..feeds import waveforms

        pre = (folder.preprocessor if folder is not None else None) or {}
        rate = int(pre.get("sampling_rate", 16000))
        normalize = bool(pre.get("do_normalize", True))
        samples = int(round(rate * WINDOW_S))
        base = any(n == "Wav2Vec2Model" for _, n in mro_names(model))

        def feeds(batch: int, seed: int):
            return {"input_values": waveforms(batch, samples, rate, seed, normalize)}

        audio, record = audio_from_extractor(folder.preprocessor if folder is not None else None)
        if audio is not None:  # the extractor's waveform, one window of the input's fixed length
            audio = replace(audio, window_s=WINDOW_S)
        data = {"preprocessing": {"input_values": record}, "window_s": WINDOW_S, "samples": samples}
        inputs = (TensorSpec("input_values", "float32", ("batch", samples), "audio", audio),)
        return {layout.MAIN: FamilyGraph(InputValues(model), inputs, feeds, keep=("last_hidden_state",) if base else None, data=data)}


FAMILY = Wav2Vec2Family()
