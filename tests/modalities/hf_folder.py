"""A CLIP-style processor folder built locally (never a download): a BPE ``tokenizer.json`` trained with the
``tokenizers`` library on digit captions, the tokenizer and image processor configs ``save_pretrained`` writes."""
from __future__ import annotations

from pathlib import Path

DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
SPLIT = r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""


def build_tokenizer(path: Path) -> Path:
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE(unk_token="<|endoftext|>", end_of_word_suffix="</w>"))
    tok.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(SPLIT), behavior="removed", invert=True),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<|startoftext|>", "<|endoftext|>"], end_of_word_suffix="</w>",
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    corpus = [f"a photo of the digit {w}" for w in DIGITS] + [f"a handwritten {w}, {i}" for i, w in enumerate(DIGITS)]
    tok.train_from_iterator(corpus * 5, trainer)
    bos, eos = tok.token_to_id("<|startoftext|>"), tok.token_to_id("<|endoftext|>")
    tok.post_processor = processors.RobertaProcessing(("<|endoftext|>", eos), ("<|startoftext|>", bos), trim_offsets=False,
                                                      add_prefix_space=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    tok.save(str(path))
    return path


def clip_processor_folder(folder: Path, image: int = 32, resample: int = 3):
    """``folder`` with tokenizer.json, tokenizer_config.json and preprocessor_config.json; returns the CLIPProcessor."""
    from transformers import CLIPImageProcessor, CLIPProcessor, CLIPTokenizerFast

    build_tokenizer(folder / "tokenizer.json")
    tok = CLIPTokenizerFast(tokenizer_file=str(folder / "tokenizer.json"), bos_token="<|startoftext|>", eos_token="<|endoftext|>",
                            pad_token="<|endoftext|>", unk_token="<|endoftext|>")
    try:  # transformers >= 5 picks a torchvision backend when it can: the Pillow one is the reference here
        from transformers import CLIPImageProcessorPil as ImageProcessor
    except ImportError:
        ImageProcessor = CLIPImageProcessor
    ip = ImageProcessor(size={"shortest_edge": image}, crop_size={"height": image, "width": image}, resample=resample)
    # Each saved on its own: preprocessor_config.json and tokenizer_config.json, the files a model folder holds
    # (transformers 5's CLIPProcessor.save_pretrained nests both in processor_config.json instead).
    ip.save_pretrained(folder)
    tok.save_pretrained(folder)
    return CLIPProcessor(image_processor=ip, tokenizer=tok)
