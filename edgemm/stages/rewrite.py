"""Export-time rewrites: modules swapped, on a copy, for equivalents whose ONNX graph has fewer layout ops.

``nn.MultiheadAttention`` exports (torch 2.13, dynamo) as 7 Transpose and 15 Reshape/Squeeze/Gather/Unsqueeze
nodes per attention in avnet: its ``batch_first`` inputs go to sequence-first, the heads are split as
``[L, B*H, D]``, and everything goes back. :class:`SplitHeadAttention` computes the same thing batch-first:
projections as ``Linear`` layers, one Reshape + Transpose per head split (``[B, H, L, D]``; K's transpose for
``Q @ K^T`` is folded into the MatMul by ONNX Runtime and OpenVINO), one back; K and V from the same tensor
share one projection (then a Split); the ``1/sqrt(D)`` scale is folded into the query projection, K's bias
is dropped (it adds one constant per query row to the scores, which softmax removes) and V's bias moves into
the output bias (each row of attention weights sums to 1). avnet: 106 -> 78 ONNX nodes, same outputs to 1e-6.
On the pruned avnet this is what lets the narrower layers show: the fixed per-node cost was as large as the
convolutions' (README, "Pruning").

The rewritten module is what the ONNX is exported from; the torch reference (``reference/model.pt2``)
stays the user's module, and the verify stage checks the ONNX against it like any export.
A ``key_padding_mask`` ([B, Lk], bool or additive float) is added to the scores as torch does. Calls the rewrite
cannot express exactly (``attn_mask``, ``is_causal``, training mode, nested tensors, ``add_bias_kv``,
``add_zero_attn``) run the original module, unchanged.

Containers read their attention's attributes: ``nn.TransformerEncoderLayer`` checks ``self_attn.batch_first``,
``in_proj_bias``, ``_qkv_same_embed_dim`` for its fused fast path, ``nn.TransformerEncoder`` /
``nn.TransformerDecoder`` read ``layers[0].self_attn.batch_first`` for the sequence length. The rewritten module
answers those from the module it replaces (read-only), and keeps the containers off their fused fast paths
(which would bypass it in eager mode and compute from the original weights instead): a forward pre-hook on it
turns the layer's fast path off (the layer checks for hooks), and the encoder's nested-tensor conversion is turned
off on the copy (its layers would get nested tensors the rewrite does not take). Both change no number.
"""
from __future__ import annotations

import copy
from functools import lru_cache

from ..lazy import lazy_import


@lru_cache(maxsize=1)
def _split_head_attention_class():
    torch = lazy_import("torch")
    F = torch.nn.functional

    class SplitHeadAttention(torch.nn.Module):
        """``nn.MultiheadAttention`` in eval mode (key padding masks only), batch-first, one transpose per head split."""

        def __init__(self, mha):
            super().__init__()
            self.original = mha
            self.heads, self.head_dim, self.batch_first = mha.num_heads, mha.head_dim, mha.batch_first
            e = mha.embed_dim
            if mha._qkv_same_embed_dim:
                wq, wk, wv = mha.in_proj_weight.detach().split(e, 0)
            else:
                wq, wk, wv = mha.q_proj_weight.detach(), mha.k_proj_weight.detach(), mha.v_proj_weight.detach()
            bias = mha.in_proj_bias.detach() if mha.in_proj_bias is not None else torch.zeros(3 * e, dtype=wq.dtype)
            bq, _, bv = bias.split(e, 0)  # K's bias adds one constant per query row to the scores: softmax drops it
            scale = self.head_dim ** -0.5
            wo = mha.out_proj.weight.detach()
            bo = mha.out_proj.bias.detach() if mha.out_proj.bias is not None else torch.zeros(e, dtype=wq.dtype)
            bo = bo + wo @ bv  # each row of attention weights sums to 1: V's bias passes through unchanged, into out_proj
            for name, t in (("wq", wq * scale), ("bq", (bq * scale).reshape(self.heads, 1, self.head_dim)), ("wk", wk), ("wv", wv), ("wo", wo), ("bo", bo)):
                self.register_buffer(name, t.clone().contiguous())
            self.fuse_kv = wk.shape == wv.shape  # K and V from one tensor: one projection (kdim == vdim)
            if self.fuse_kv:
                self.register_buffer("wkv", torch.cat([wk, wv]).contiguous())
            self.train(mha.training)  # a new module starts in training mode; this one follows the one it replaces
            # TransformerEncoderLayer takes its fused fast path (computing from the original's weights, not this
            # module) unless a hook is attached to one of its modules; a no-op pre-hook keeps it on this forward
            self.register_forward_pre_hook(_no_fast_path)

        def __getattr__(self, name):
            # parameters, buffers and submodules first (nn.Module's lookup); then the replaced module's attributes
            # (batch_first, in_proj_bias, num_heads ...), which containers such as TransformerEncoderLayer read
            try:
                return super().__getattr__(name)
            except AttributeError:
                original = self.__dict__.get("_modules", {}).get("original")
                if original is None or name.startswith("__"):
                    raise
                return getattr(original, name)

        def forward(self, query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
                    average_attn_weights=True, is_causal=False):
            if (attn_mask is not None or is_causal or self.training or query.dim() != 3 or query.is_nested
                    or (key_padding_mask is not None and key_padding_mask.dim() != 2)):
                return self.original(query, key, value, key_padding_mask=key_padding_mask, need_weights=need_weights,
                                     attn_mask=attn_mask, average_attn_weights=average_attn_weights, is_causal=is_causal)
            shared_kv = key is value and self.fuse_kv
            if not self.batch_first:
                query, key, value = query.transpose(0, 1), key.transpose(0, 1), value.transpose(0, 1)
            heads = (self.heads, self.head_dim)
            # The query bias is added after the head split: OpenVINO 2026.4's low-precision passes crash (SIGFPE in
            # ReshapeTransformation) on an int8 Q/DQ MatMul -> Add(bias) -> Reshape chain that splits heads.
            q = F.linear(query, self.wq).unflatten(-1, heads).transpose(1, 2) + self.bq  # [B, H, Lq, D]
            if shared_kv:  # one projection for both: [B, Lk, 2H, D] -> [B, 2H, Lk, D] -> K, V
                k, v = F.linear(key, self.wkv).unflatten(-1, (2 * self.heads, self.head_dim)).transpose(1, 2).chunk(2, 1)
            else:
                k = F.linear(key, self.wk).unflatten(-1, heads).transpose(1, 2)  # [B, H, Lk, D]
                v = F.linear(value, self.wv).unflatten(-1, heads).transpose(1, 2)
            scores = torch.matmul(q, k.transpose(-1, -2))  # [B, H, Lq, Lk]; the transpose folds into the MatMul
            if key_padding_mask is not None:  # [B, Lk]: True (or -inf) = a padded key, as F._canonical_mask reads it
                if key_padding_mask.dtype == torch.bool:
                    key_padding_mask = torch.zeros_like(key_padding_mask, dtype=scores.dtype).masked_fill(key_padding_mask, float("-inf"))
                scores = scores + key_padding_mask.to(scores.dtype)[:, None, None, :]
            weights = torch.softmax(scores, -1)
            out = F.linear(torch.matmul(weights, v).transpose(1, 2).flatten(2), self.wo, self.bo)  # [B, Lq, E]
            if not self.batch_first:
                out = out.transpose(0, 1)
            if not need_weights:
                return out, None
            return out, (weights.mean(1) if average_attn_weights else weights)

    return SplitHeadAttention


def _no_fast_path(module, args):
    """A forward pre-hook that changes nothing: its presence keeps TransformerEncoderLayer off its fused path."""
    return None


def _rewritable(torch, m) -> bool:
    """An ``nn.MultiheadAttention`` computing what torch's does (a subclass with its own ``forward`` computes
    something else: it stays)."""
    mha = torch.nn.MultiheadAttention
    return (isinstance(m, mha) and type(m).forward is mha.forward and m.bias_k is None and m.bias_v is None
            and not m.add_zero_attn)


def _declared(path: str, declared) -> bool:
    """Inside an attention module a model family declared (``edgemm_attention``, families/base.AttentionPattern):
    the family's attention is exported as the model computes it."""
    return any(path == d or path.startswith(d + ".") for d in declared)


def rewrite_attention(model):
    """``(copy, names)``: a copy of ``model`` with every rewritable ``nn.MultiheadAttention`` replaced by
    :class:`SplitHeadAttention` (``names``: their module paths); ``(model, [])`` when there is none. Attention
    modules the model's family declares (``model.edgemm_attention``, set by edgemm.families) are left as they are."""
    torch = lazy_import("torch")
    if not isinstance(model, torch.nn.Module):
        return model, []
    declared = tuple(getattr(model, "edgemm_attention", None) or ())
    if not any(_rewritable(torch, m) and not _declared(p, declared) for p, m in model.named_modules()):
        return model, []
    SplitHeadAttention = _split_head_attention_class()
    copied = copy.deepcopy(model)
    names = []
    for parent_name, parent in list(copied.named_modules()):
        for child_name, child in list(parent.named_children()):
            path = f"{parent_name}.{child_name}" if parent_name else child_name
            if _rewritable(torch, child) and not _declared(path, declared):
                setattr(parent, child_name, SplitHeadAttention(child))
                names.append(path)
    for m in copied.modules():  # nested tensors would bypass the rewritten layers (module docstring)
        if isinstance(m, torch.nn.TransformerEncoder) and any(isinstance(a, SplitHeadAttention) for a in m.modules()):
            m.use_nested_tensor = False
    return copied, names
