"""A small CNN carrying timm's data config (``pretrained_cfg``) the way ``timm.create_model`` modules do: the
timm family recognises a model by that config, so this exercises the family where timm itself cannot be imported
(timm imports torchvision, see edgemm.families.deps)."""
from __future__ import annotations

import torch

CFG = {"architecture": "timm_like_net", "input_size": (3, 40, 40), "mean": (0.5, 0.4, 0.3), "std": (0.2, 0.25, 0.3),
       "interpolation": "bicubic", "crop_pct": 0.875, "crop_mode": "center", "num_classes": 5}


class TimmLikeNet(torch.nn.Module):
    def __init__(self, num_classes: int = 5):
        super().__init__()
        self.num_classes = num_classes
        self.pretrained_cfg = dict(CFG, num_classes=num_classes)
        self.conv = torch.nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.bn = torch.nn.BatchNorm2d(8)
        self.head = torch.nn.Linear(8, num_classes) if num_classes else torch.nn.Identity()

    def forward(self, x):
        return self.head(torch.relu(self.bn(self.conv(x))).mean(dim=(2, 3)))
