"""CLIP's two towers as export wrappers (torch)."""
from __future__ import annotations

import torch

from ..modules import FamilyModule, named_tensors


def _normalised(x: torch.Tensor) -> torch.Tensor:
    return x / x.pow(2).sum(dim=-1, keepdim=True).sqrt()  # as CLIPModel.forward normalises its embeddings


class CLIPVision(FamilyModule):
    output_names = ("image_embeds",)

    def __init__(self, vision_model, projection):
        super().__init__()
        self.vision_model = vision_model
        self.projection = projection

    def outputs(self, pixel_values):
        pooled = self.vision_model(pixel_values=pixel_values).pooler_output
        return {"image_embeds": _normalised(self.projection(pooled))}

    def forward(self, pixel_values):
        return self.pick(self.outputs(pixel_values))


class CLIPText(FamilyModule):
    output_names = ("text_embeds",)

    def __init__(self, text_model, projection):
        super().__init__()
        self.text_model = text_model
        self.projection = projection

    def outputs(self, input_ids, attention_mask):
        pooled = self.text_model(input_ids=input_ids, attention_mask=attention_mask).pooler_output
        return {"text_embeds": _normalised(self.projection(pooled))}

    def forward(self, input_ids, attention_mask):
        return self.pick(self.outputs(input_ids, attention_mask))


class VisionWithProjection(FamilyModule):
    """A CLIPVisionModelWithProjection: its ModelOutput's tensors by name."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def outputs(self, pixel_values):
        return named_tensors(self.model(pixel_values=pixel_values))

    def forward(self, pixel_values):
        return self.pick(self.outputs(pixel_values))


class TextWithProjection(FamilyModule):
    """A CLIPTextModelWithProjection: its ModelOutput's tensors by name."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def outputs(self, input_ids, attention_mask):
        return named_tensors(self.model(input_ids=input_ids, attention_mask=attention_mask))

    def forward(self, input_ids, attention_mask):
        return self.pick(self.outputs(input_ids, attention_mask))
