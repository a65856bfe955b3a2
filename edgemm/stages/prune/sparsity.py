"""2:4 semi-structured sparsity (TensorRT sparse weights): in every run of 4 weights along the input
dimension of a Conv/Linear, the 2 smallest are zeroed. Shapes stay; no CPU speedup is claimed."""
from __future__ import annotations

from typing import Sequence

from ...lazy import lazy_import
from .keep import covers, kept_by


def _mask_2_4(weight):
    torch = lazy_import("torch")
    w = weight.detach()
    # move the input dim last: Linear [O, I]; Conv [O, I, *k] -> [O, *k, I]
    perm = [0, *range(2, w.dim()), 1]
    wp = w.permute(*perm).contiguous()
    quads = wp.abs().reshape(-1, 4)
    keep = torch.zeros_like(quads, dtype=torch.bool)
    keep.scatter_(1, quads.topk(2, dim=1).indices, True)
    inv = [perm.index(i) for i in range(w.dim())]
    return keep.reshape(wp.shape).permute(*inv).contiguous()


def sparse_candidates(model) -> dict[str, "object"]:
    """name -> module for each Conv/Linear that 2:4 applies to: an input dimension (per group) divisible
    by 4 (depthwise convs and 3-channel stems are left dense, as TensorRT's sparse kernels require)."""
    nn = lazy_import("torch").nn
    return {name: m for name, m in model.named_modules()
            if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)) and m.weight.dim() >= 2 and m.weight.shape[1] % 4 == 0}


def check_keep(model, keep: Sequence[str]) -> None:
    """Refuse ``keep`` names of a 2:4-only request that name no module (close-match hint) or cover no layer 2:4 applies to."""
    known = [n for n, _ in model.named_modules() if n]
    kept_by({n: [n] for n in sparse_candidates(model)}, known, keep,
            "prune keep {name!r} covers no layer that 2:4 sparsity applies to (a Conv/Linear whose input width is divisible "
            "by 4; 3-channel stems, depthwise convs and parameter-free modules stay dense anyway); name such a layer or a container of them")


def apply_2_4(model, keep: Sequence[str] = ()) -> dict[str, "object"]:
    """Zero 2 of every 4 weights along the input dim of each eligible Conv/Linear (:func:`sparse_candidates`)
    that no ``keep`` name covers (those stay dense); name -> mask."""
    torch = lazy_import("torch")
    masks = {}
    for name, m in sparse_candidates(model).items():
        if any(covers(k, name) for k in keep):
            continue
        mask = _mask_2_4(m.weight)
        with torch.no_grad():
            m.weight.mul_(mask)
        masks[name] = mask
    return masks


def reapply(model, masks) -> None:
    """Keep the pattern during fine-tuning (call after every optimizer step)."""
    torch = lazy_import("torch")
    with torch.no_grad():
        for name, mask in masks.items():
            model.get_submodule(name).weight.mul_(mask)


def is_2_4(weight) -> bool:
    """True when every run of 4 along the input dim has at most 2 non-zeros."""
    w = weight.detach()
    perm = [0, *range(2, w.dim()), 1]
    quads = (w.permute(*perm).reshape(-1, 4) != 0).sum(1)
    return bool((quads <= 2).all())
