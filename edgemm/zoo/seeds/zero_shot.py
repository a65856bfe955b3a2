"""Zero-shot classification with the dual encoder: class embeddings from prompts, top-1 from similarities."""
from __future__ import annotations

from typing import Callable

import numpy as np

from . import captions


def class_embeddings(embed_text: Callable[[np.ndarray], np.ndarray], tokenizer) -> np.ndarray:
    """[10, D]: for each digit the normalised mean of its prompts' embeddings (every template, one text-graph run)."""
    rows = captions.class_prompts()
    ids = captions.encode(tokenizer, [p for row in rows for p in row])
    emb = np.asarray(embed_text(ids), np.float64).reshape(len(rows), len(rows[0]), -1).mean(axis=1)
    return emb / np.linalg.norm(emb, axis=1, keepdims=True)


def predict(image_embeddings: np.ndarray, classes: np.ndarray) -> np.ndarray:
    return (np.asarray(image_embeddings, np.float64) @ classes.T).argmax(axis=1)


def top1(image_embeddings: np.ndarray, classes: np.ndarray, labels: np.ndarray) -> float:
    return float((predict(image_embeddings, classes) == np.asarray(labels)).mean())


class PromptEnsemble:
    """``combine=`` of ``edgemm.runtime.stream.Stream`` for the dual encoder: the text graph ran once on every
    class prompt (``captions.class_prompts()`` flattened: class-major, every template); each frame's image
    embedding is scored against the class embeddings (normalised template means). ``outputs["digit"]`` is the
    best class and its softmax score over ``scale`` * cosine."""

    def __init__(self, image: str = "image_embedding", text: str = "text_embedding", *, graph: str = "text",
                 scale: float = 30.0, name: str = "digit"):
        self.image, self.text, self.graph, self.scale, self.name = image, text, graph, float(scale), name
        self.labels = {name: [str(d) for d in range(10)]}

    def __call__(self, frame_outputs: dict, constants: dict) -> dict:
        emb = np.asarray(constants[self.graph][self.text], np.float64)
        classes = emb.reshape(10, -1, emb.shape[-1]).mean(axis=1)
        classes /= np.linalg.norm(classes, axis=1, keepdims=True)
        img = np.asarray(frame_outputs[self.image], np.float64)
        img = img / np.maximum(np.linalg.norm(img, axis=-1, keepdims=True), 1e-12)
        return {self.name: (self.scale * img @ classes.T).astype(np.float32)}


def stream_prompts() -> list[str]:
    """The text graph's constant input of a zero-shot stream, in the order ``PromptEnsemble`` expects."""
    return [p for row in captions.class_prompts() for p in row]
