"""Whole attention heads removed from ``nn.MultiheadAttention`` (then the rest narrowed to the ratio).

``nn.MultiheadAttention`` ties its inner q/k/v width to the token width (``embed_dim``): inner
channel ``c`` and token channel ``c`` go together, so the channels of a torch-pruning group that
holds an attention are its heads' channels. Removing a head removes its ``head_dim`` channels from
the token width too (positional embeddings, LayerNorms, the layers that write and read the tokens).
torch-pruning's own head pruning wants separate q/k/v ``Linear`` layers, so edgemm picks the heads
here and lets torch-pruning's DepGraph carry the removal through the group.

Schedule for ratio ``r`` on ``H`` heads of width ``d``: ``H' = max(1, round(H * (1 - r)))`` heads stay,
each ``min(d, int(H*d*(1-r)) // H')`` wide (``r = 0.5``, 4 x 24 -> 2 x 24; ``r = 0.3`` -> 3 x 22;
``r = 0.1`` -> 4 x 21); iterative steps move linearly towards that. Importance of a head: the mean
over its channels of the group's importance (torch-pruning's criterion) plus the attention's own
q/k/v rows and output-projection columns (magnitude, or |w * grad| for taylor), each normalised by
its mean. The narrowing after head removal drops the same positions from every remaining head
(importance averaged over heads), as torch-pruning's channel groups do.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from ...lazy import lazy_import


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def schedule(heads: int, head_dim: int, ratio: float, steps: int) -> list[tuple[int, int]]:
    """(heads, head_dim) after each step 1..steps (the last one is the target)."""
    kept = int(heads * head_dim * (1 - ratio))
    h_final = max(1, min(heads, _round_half_up(heads * (1 - ratio))))
    d_final = max(1, min(head_dim, kept // h_final))
    return [(heads - _round_half_up((heads - h_final) * s / steps), head_dim - _round_half_up((head_dim - d_final) * s / steps))
            for s in range(1, steps + 1)]


@dataclass
class HeadGroup:
    """One torch-pruning group holding attentions whose heads line up channel for channel."""

    names: list[str]  # the attentions (module names)
    modules: list
    plan: list[tuple[int, int]]  # (heads, head_dim) after each step
    history: list[tuple[int, int]] = field(default_factory=list)

    def summary(self) -> dict:
        h0, d0 = self.history[0]
        h1, d1 = self.history[-1]
        return {"attention": self.names, "heads": [h0, h1], "head_dim": [d0, d1]}


def find_head_groups(dg, groups, names, ratio_of, steps: int) -> list[tuple[object, HeadGroup]]:
    """(group, HeadGroup) for each group that holds ``nn.MultiheadAttention`` out-channel pruning and whose
    attentions all share heads x head_dim with an identity channel map (else: narrowing, as before)."""
    nn = lazy_import("torch").nn
    found = []
    for g in groups:
        mhas, aligned = [], True
        for item in g:
            m = item.dep.target.module
            if isinstance(m, nn.MultiheadAttention) and dg.is_out_channel_pruning_fn(item.dep.handler):
                mhas.append(m)
                aligned &= list(item.idxs) == list(item.root_idxs) == list(range(m.embed_dim))
        if not mhas or not aligned:
            continue
        shapes = {(m.num_heads, m.head_dim, m.embed_dim) for m in mhas}
        same_dims = all(m._qkv_same_embed_dim for m in mhas)
        ratio = ratio_of(g)
        if len(shapes) != 1 or not same_dims or ratio <= 0:
            continue
        h, d, _ = shapes.pop()
        if h < 2:
            continue
        found.append((g, HeadGroup([names[m] for m in mhas], mhas, schedule(h, d, ratio, steps), [(h, d)])))
    return found


def _attention_importance(mha, taylor: bool):
    """Per inner channel: q, k, v rows of the input projection and the output projection's column."""
    torch = lazy_import("torch")
    e = mha.embed_dim

    def score(w):
        if taylor and w.grad is not None:
            return (w.detach() * w.grad).abs()
        return w.detach().pow(2)

    w = score(mha.in_proj_weight)  # (3E, E)
    per = w[:e].sum(1) + w[e:2 * e].sum(1) + w[2 * e:].sum(1)
    per = per + score(mha.out_proj.weight).sum(0)  # (E, E): column c reads inner channel c
    return per / per.mean().clamp_min(torch.finfo(per.dtype).tiny)


def prune_heads(pruner, tp, hg: HeadGroup, step: int, taylor: bool) -> None:
    """Bring every attention of ``hg`` to its planned (heads, head_dim) for ``step`` (0-based)."""
    torch = lazy_import("torch")
    h_cur, d_cur = hg.history[-1]
    h_new, d_new = hg.plan[step]
    if (h_new, d_new) == (h_cur, d_cur):
        hg.history.append((h_cur, d_cur))
        return
    lead = hg.modules[0]
    e = lead.embed_dim
    full = pruner.DG.get_pruning_group(lead, tp.prune_multihead_attention_out_channels, list(range(e)))
    imp = pruner.estimate_importance(full)
    terms = [_attention_importance(m, taylor) for m in hg.modules]
    if imp is not None:
        terms.append(imp.to(terms[0].dtype) / imp.mean().clamp_min(torch.finfo(terms[0].dtype).tiny))
    score = torch.stack(terms).mean(0).view(h_cur, d_cur)
    keep_heads = sorted(torch.argsort(score.mean(1), descending=True)[:h_new].tolist())
    keep_pos = sorted(torch.argsort(score[keep_heads].mean(0), descending=True)[:d_new].tolist())
    keep = {h * d_cur + p for h in keep_heads for p in keep_pos}
    drop = [c for c in range(e) if c not in keep]
    for m in hg.modules:
        m.num_heads = h_new  # torch-pruning sets head_dim = embed_dim // num_heads
    group = pruner.DG.get_pruning_group(lead, tp.prune_multihead_attention_out_channels, drop)
    group.prune()
    for m, name in zip(hg.modules, hg.names):
        got, want = (m.embed_dim, m.num_heads, m.head_dim), (h_new * d_new, h_new, d_new)
        if got != want:  # an internal invariant (not user input): a bug, not an EdgemmError
            raise RuntimeError(
                f"bug in edgemm's head pruning: attention {name!r} has (embed_dim, num_heads, head_dim) = {got} after "
                f"pruning step {step + 1}, expected {want}; please report it"
            )
    hg.history.append((h_new, d_new))
