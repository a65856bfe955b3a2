"""Hugging Face Whisper's encoder: the log-mel spectrogram (``input_features``, ``num_mel_bins`` x
``2 * max_source_positions`` frames) -> ``last_hidden_state``. The decoder is not exported (graph ``encoder``)."""
from __future__ import annotations

from dataclasses import replace

from ...iospec import TensorSpec
from ..base import AttentionPattern, Family, FamilyGraph, hf_model_type, mro_names
from ..folder import ModelFolder
from ..hf import load_pretrained
from ..preprocessing import audio_from_extractor


class WhisperEncoderFamily(Family):
    name = "hf-whisper"
    description = "Hugging Face Whisper encoder (log-mel input_features -> last_hidden_state), graph encoder"
    model_types = ("whisper",)
    library = "transformers"
    attention = (AttentionPattern(("WhisperAttention",)),)

    def recognises_module(self, obj) -> bool:
        return hf_model_type(obj) == "whisper"

    def load(self, folder: ModelFolder):
        return load_pretrained("WhisperModel", folder, "Hugging Face Whisper")

    def graphs(self, model, folder: ModelFolder | None) -> dict[str, FamilyGraph]:
        from ..wrappers import InputFeatures
        from ..feeds import whisper_log_mel

        encoder = model if any(n == "WhisperEncoder" for _, n in mro_names(model)) else model.get_encoder()
        cfg = model.config
        n_mels, frames = int(cfg.num_mel_bins), 2 * int(cfg.max_source_positions)  # the encoder takes exactly this many
        pre = (folder.preprocessor if folder is not None else None) or {}
        rate, n_fft, hop = int(pre.get("sampling_rate", 16000)), int(pre.get("n_fft", 400)), int(pre.get("hop_length", 160))

        def feeds(batch: int, seed: int):
            return {"input_features": whisper_log_mel(batch, n_mels, frames, seed, rate, n_fft, hop)}

        audio, record = audio_from_extractor(folder.preprocessor if folder is not None else None)
        if audio is not None:
            audio, record = _fit_encoder(audio, record, n_mels, frames)
        data = {"preprocessing": {"input_features": record}, "frames": frames, "n_mels": n_mels}
        inputs = (TensorSpec("input_features", "float32", ("batch", n_mels, frames), "audio", audio),)
        return {"encoder": FamilyGraph(InputFeatures(encoder), inputs, feeds, keep=("last_hidden_state",), data=data)}


def _fit_encoder(audio, record: dict, n_mels: int, frames: int):
    """The extractor's log-mel sized to what the encoder takes: ``frames`` frames (the first ``frames * hop`` samples;
    the extractor's own ``chunk_length`` gives as many for a real Whisper) and ``n_mels`` bands; a change is recorded."""
    window_s = frames * audio.hop / audio.sample_rate
    notes = []
    if abs(window_s - audio.window_s) > 1e-9:
        notes.append(f"chunk_length {audio.window_s:g} s gives {audio.n_frames} frames; the encoder takes {frames}: the first {window_s:g} s")
    if n_mels != audio.n_mels:
        notes.append(f"feature_size {audio.n_mels} differs from the model's num_mel_bins {n_mels} (the model's used)")
    if not notes:
        return audio, record
    return replace(audio, window_s=window_s, n_mels=n_mels), {**record, "exact": False, "not_expressed": notes}


FAMILY = WhisperEncoderFamily()
