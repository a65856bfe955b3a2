"""Hugging Face CLIP: two graphs, ``vision`` (``pixel_values`` -> ``image_embeds``) and ``text`` (``input_ids`` +
``attention_mask`` -> ``text_embeds``), the L2-normalised embeddings ``CLIPModel`` returns. The similarity
logits (images x texts) are computed by the application from the two embeddings: they are not per sample.
"""
from __future__ import annotations

from ...iospec import ImagePreprocess, TensorSpec
from ..base import AttentionPattern, Family, FamilyGraph, hf_model_type, mro_names
from ..folder import ModelFolder
from ..hf import load_pretrained, text_feeds_for
from ..preprocessing import image_from_processor, text_from_tokenizer

CLIP_MEAN, CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)


class CLIPFamily(Family):
    name = "hf-clip"
    description = ("Hugging Face CLIPModel: graphs vision (pixel_values -> image_embeds) and text (input_ids, attention_mask "
                   "-> text_embeds); CLIPVisionModelWithProjection / CLIPTextModelWithProjection: one of them")
    model_types = ("clip",)
    library = "transformers"
    attention = (AttentionPattern(("CLIPAttention",)),)
    CLASSES = {"CLIPModel": "clip", "CLIPVisionModelWithProjection": "clip_vision_model",
               "CLIPTextModelWithProjection": "clip_text_model"}

    def recognises_module(self, obj) -> bool:
        kind = hf_model_type(obj)
        return kind is not None and any(self.CLASSES.get(n) == kind for _, n in mro_names(obj))

    def load(self, folder: ModelFolder):
        return load_pretrained("CLIPModel", folder, "Hugging Face CLIP")

    def graphs(self, model, folder: ModelFolder | None) -> dict[str, FamilyGraph]:
        from .modules import CLIPText, CLIPVision, TextWithProjection, VisionWithProjection

        kind = model.config.model_type
        if kind == "clip_vision_model":  # the image embeddings as the model returns them (not normalised)
            return {"vision": self._vision(VisionWithProjection(model), model.config, folder)}
        if kind == "clip_text_model":
            return {"text": self._text(TextWithProjection(model), model.config, folder)}
        return {"vision": self._vision(CLIPVision(model.vision_model, model.visual_projection), model.config.vision_config, folder),
                "text": self._text(CLIPText(model.text_model, model.text_projection), model.config.text_config, folder)}

    @staticmethod
    def _vision(module, vc, folder: ModelFolder | None) -> FamilyGraph:
        from ..feeds import images

        size = (int(vc.image_size), int(vc.image_size))
        if folder is not None and folder.preprocessor is not None:
            pre, pre_data = image_from_processor(folder.preprocessor, size)
        else:
            pre = ImagePreprocess(size=size, mean=CLIP_MEAN, std=CLIP_STD)
            pre_data = {"exact": False, "not_expressed": ["no preprocessor_config.json: CLIP's default mean/std assumed"]}
        channels = int(getattr(vc, "num_channels", 3))
        pixel = TensorSpec("pixel_values", "float32", ("batch", channels, *size), "image", pre if channels == 3 else None)

        def feeds(batch: int, seed: int):
            return {"pixel_values": images(batch, size, pre.mean, pre.std, seed, channels)}

        return FamilyGraph(module, (pixel,), feeds, keep=("image_embeds",), data={"preprocessing": {"pixel_values": pre_data}})

    @staticmethod
    def _text(module, tc, folder: ModelFolder | None) -> FamilyGraph:
        length = int(tc.max_position_embeddings)  # CLIP's tokenizer pads to this length
        # the folder's tokenizer.json (shipped in the bundle): rt.preprocess(input_ids=["a photo of a cat"]) fills both inputs
        pre, data = text_from_tokenizer(folder, length, "attention_mask", getattr(tc, "pad_token_id", None))
        inputs = (TensorSpec("input_ids", "int64", ("batch", length), "text", pre),
                  TensorSpec("attention_mask", "int64", ("batch", length), "tensor"))
        return FamilyGraph(module, inputs, text_feeds_for(tc, length), keep=("text_embeds",), data=data)


FAMILY = CLIPFamily()
