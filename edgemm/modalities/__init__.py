"""Modalities: the kinds of raw input a model takes (image, audio, text, video clip, plain tensor, and what
plugins add through the ``edgemm.modalities`` entry point). See ``base.Modality`` for the contract and
``registry`` for how they are found."""
