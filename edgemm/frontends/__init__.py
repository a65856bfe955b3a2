"""Modality frontends: raw camera frames, waveforms and text -> model-level tensors.

``image``, ``audio`` and ``text`` are the numpy reference frontends (what training used); ``native``
is the same image and audio arithmetic as a C extension with a numpy fallback (what the runtime
and streams run). The folder sits below ``edgemm.data`` (sample files) and ``edgemm.runtime``, which
both use it; ``native`` builds on the references, so nothing here imports ``native``.
"""
