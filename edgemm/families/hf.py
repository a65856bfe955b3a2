"""What the Hugging Face families share: loading a ``save_pretrained`` folder without the network, valid token
feeds from a text config, and what a graph records about the folder's tokenizer."""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ..errors import EdgemmError, one_line
from .deps import transformers_attr
from .folder import FolderError, ModelFolder


def load_pretrained(class_name: str, folder: ModelFolder, needed_by: str):
    """``transformers.<class_name>.from_pretrained(folder)`` from local files only (never the hub); weights in
    safetensors (or torch's weights-only loader for ``pytorch_model.bin``), no remote code."""
    from ..liblogs import captured_library_logs

    cls = transformers_attr(class_name, needed_by)
    if folder.weights is None:
        raise FolderError(f"the model folder {folder.path} has a config.json but no weights (model.safetensors); "
                          "save the model with save_pretrained(folder)")
    with captured_library_logs("transformers", "huggingface_hub"):
        try:
            model = cls.from_pretrained(str(folder.path), local_files_only=True, trust_remote_code=False)
        except (EdgemmError, KeyboardInterrupt):
            raise
        except Exception as exc:  # transformers raises many types for a bad folder
            raise FolderError(f"cannot load {class_name} from {folder.path} ({type(exc).__name__}: {one_line(exc)[:300]}); "
                              "check that the folder is complete (config.json and its weights) and was written by "
                              f"save_pretrained with a compatible transformers version") from exc
    return model.eval()


def special_ids(config) -> tuple[int | None, int | None, int | None]:
    """(bos, eos, pad) token ids of a text config, each inside the vocabulary or None."""
    vocab = int(config.vocab_size)

    def ok(v):
        return int(v) if isinstance(v, int) and not isinstance(v, bool) and 0 <= v < vocab else None

    bos, eos, pad = ok(getattr(config, "bos_token_id", None)), ok(getattr(config, "eos_token_id", None)), ok(getattr(config, "pad_token_id", None))
    if getattr(config, "eos_token_id", None) == 2 and getattr(config, "model_type", "") == "clip_text_model":
        # CLIP configs from before transformers#24773 pool at the highest id (the tokenizer's end-of-text token)
        bos, eos = vocab - 2, vocab - 1
    return bos, eos, pad


def text_feeds_for(config, length: int) -> Callable[[int, int], dict[str, np.ndarray]]:
    """Valid ``input_ids`` + ``attention_mask`` of ``length`` tokens for a text config."""
    from .feeds import token_ids

    bos, eos, pad = special_ids(config)
    vocab = int(config.vocab_size)

    def feeds(batch: int, seed: int) -> dict[str, np.ndarray]:
        ids, mask = token_ids(batch, length, vocab, seed, bos=bos, eos=eos, pad=pad)
        return {"input_ids": ids, "attention_mask": mask}

    return feeds


def read_safetensors(path) -> dict:
    """A safetensors file's tensors (no code runs; a corrupt file is one line)."""
    from .deps import import_optional

    st = import_optional("safetensors.torch", "reading safetensors weights")
    try:
        return st.load_file(str(path))
    except (EdgemmError, KeyboardInterrupt):
        raise
    except Exception as exc:  # safetensors raises its own SafetensorError, OSError, ...
        raise FolderError(f"cannot read the weights {path} ({type(exc).__name__}: {one_line(exc)[:200]}); "
                          "the file is corrupt or not safetensors: save the model again") from exc
