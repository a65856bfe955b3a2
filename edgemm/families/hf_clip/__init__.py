"""Hugging Face CLIP: two graphs, ``vision`` (``pixel_values`` -> ``image_embeds``) and ``text`` (``input_ids`` +
``attention_mask`` -> ``text_embeds``), the L2-normalised embeddings ``CLIPModel`` returns. The similarity
logits (images x texts) are computed by the application from the two embeddings: they are not per sample.
"""
from __future__ import annotations

from ...iospec import ImagePreprocess, TensorSpec
from ..base import Family, FamilyGraph, hf_model_type, mro_names
from ..folder import ModelFolder
from ..hf import load_pretrained, text_data, text_feeds_for
from ..preprocessing import image_from_processor

CLIP_MEAN, CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)


class CLIPFamily(Family):
    name = "hf-clip"
    description = "Hugging Face CLIPModel: graphs vision (pixel_values -> image_embeds) and text (input_ids, attention_mask -> text_embeds)"
    model_types = ("clip",)
    library = "transformers"

    def recognises_module(self, obj) -> bool:
        return hf_model_type(obj) == "clip" and any(n == "CLIPModel" for _, n in mro_names(obj))

    def load(self, folder: ModelFolder):
        return load_pretrained("CLIPModel", folder, "Hugging Face CLIP")

    def graphs(self, model, folder: ModelFolder | None) -> dict[str, FamilyGraph]:
        from ..feeds import images
        from .modules import CLIPText, CLIPVision

        vc, tc = model.config.vision_config, model.config.text_config
        size = (int(vc.image_size), int(vc.image_size))
        if folder is not None and folder.preprocessor is not None:
            pre, pre_data = image_from_processor(folder.preprocessor, size)
        else:
            pre = ImagePreprocess(size=size, mean=CLIP_MEAN, std=CLIP_STD)
            pre_data = {"exact": False, "not_expressed": ["no preprocessor_config.json: CLIP's default mean/std assumed"]}
        channels = int(getattr(vc, "num_channels", 3))
        pixel = TensorSpec("pixel_values", "float32", ("batch", channels, *size), "image", pre if channels == 3 else None)

        def vision_feeds(batch: int, seed: int):
            return {"pixel_values": images(batch, size, pre.mean, pre.std, seed, channels)}

        length = int(tc.max_position_embeddings)
        text_inputs = (TensorSpec("input_ids", "int64", ("batch", length), "text"),
                       TensorSpec("attention_mask", "int64", ("batch", length), "tensor"))
        return {
            "vision": FamilyGraph(CLIPVision(model.vision_model, model.visual_projection), (pixel,), vision_feeds,
                                  keep=("image_embeds",), data={"preprocessing": {"pixel_values": pre_data}}),
            "text": FamilyGraph(CLIPText(model.text_model, model.text_projection), text_inputs, text_feeds_for(tc, length),
                                keep=("text_embeds",), data=text_data(folder, length)),
        }


FAMILY = CLIPFamily()
