"""Families declare their attention modules (Family.attention): the HF families find every attention of a real
(random-init) model; structured pruning keeps the declared projections whole (torch-pruning cannot know they
split into heads) and still prunes the rest; the attention rewrite leaves declared modules alone."""
from __future__ import annotations

import pytest

pytest.importorskip("transformers")
torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from edgemm.families import resolve_module  # noqa: E402
from edgemm.families.base import AttentionPattern, find_attention  # noqa: E402
from edgemm.families.registry import all_families  # noqa: E402
from edgemm.stages.prune.structured import declared_attention_projections  # noqa: E402
from edgemm.stages.rewrite import rewrite_attention  # noqa: E402

from hf_tiny import tiny_clip, tiny_wav2vec2, tiny_whisper  # noqa: E402


@pytest.mark.parametrize("family, make, layers", [("hf-clip", tiny_clip, 4), ("hf-wav2vec2", tiny_wav2vec2, 2),
                                                  ("hf-whisper", tiny_whisper, None)])
def test_hf_families_find_every_attention(family, make, layers):
    model = make()
    fam = all_families()[family]
    found = fam.attention_modules(model)
    truth = [n for n, m in model.named_modules() if type(m).__name__.endswith("Attention")]
    assert sorted(found) == sorted(truth) and truth
    if layers is not None:
        assert len(found) == layers
    for path in found:
        att = model.get_submodule(path)
        assert all(isinstance(getattr(att, p), nn.Linear) for p in found[path].projections())


def test_resolved_graph_records_the_attention_of_its_own_module():
    resolved = resolve_module(tiny_clip())
    text = resolved.graphs["text"].model
    assert sorted(text.edgemm_attention) == [f"text_model.encoder.layers.{i}.self_attn" for i in range(2)]
    projections = declared_attention_projections(text)
    assert len(projections) == 2 * 4 and all(isinstance(m, nn.Linear) for m in projections)


class Block(nn.Module):
    """A model whose attention is its own class (q/k/v/out Linear layers, heads split by reshape) beside an MLP."""

    class MyAttention(nn.Module):
        def __init__(self, width=32, heads=4):
            super().__init__()
            self.num_heads, self.head_dim = heads, width // heads
            self.q_proj, self.k_proj, self.v_proj, self.out_proj = (nn.Linear(width, width) for _ in range(4))

        def forward(self, x):
            b, n, _ = x.shape
            split = lambda t: t.view(b, n, self.num_heads, self.head_dim).transpose(1, 2)  # noqa: E731
            q, k, v = split(self.q_proj(x)), split(self.k_proj(x)), split(self.v_proj(x))
            w = torch.softmax(q @ k.transpose(-1, -2) * self.head_dim ** -0.5, -1)
            return self.out_proj((w @ v).transpose(1, 2).reshape(b, n, -1))

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.attn = self.MyAttention()
        self.fc1, self.fc2 = nn.Linear(32, 64), nn.Linear(64, 32)
        self.mix = nn.MultiheadAttention(32, 4, batch_first=True)
        self.head = nn.Linear(32, 3)

    def forward(self, x):
        x = x + self.attn(x)
        x = x + self.mix(x, x, x, need_weights=False)[0]
        return self.head((x + self.fc2(torch.relu(self.fc1(x)))).mean(1))


def test_pruning_keeps_declared_attention_whole():
    from edgemm.iospec import IOSpec, TensorSpec
    from edgemm.stages.prune import prune_model

    spec = IOSpec((TensorSpec("x", "float32", ("batch", 6, 32)),), (TensorSpec("y", "float32", ("batch", 3)),))
    model = Block().eval()
    model.edgemm_attention = find_attention(model, (AttentionPattern(("MyAttention",)),))
    assert list(model.edgemm_attention) == ["attn"]
    result = prune_model(model, spec, {"ratio": 0.5, "epochs": 0}, progress=lambda m: None)
    pruned = result.module
    assert [pruned.attn.get_submodule(p).out_features for p in ("q_proj", "k_proj", "v_proj")] == [32, 32, 32]
    assert pruned.fc1.out_features < 64  # the rest is still pruned
    with torch.no_grad():
        assert pruned(torch.randn(2, 6, 32)).shape == (2, 3)


def test_rewrite_leaves_declared_attention_and_mha_subclasses():
    class MyMHA(nn.MultiheadAttention):  # a subclass with its own forward computes something else
        def forward(self, q, k, v, **kw):
            out, w = super().forward(q, k, v, **kw)
            return out * 2, w

    holder = nn.Module()
    holder.mine = MyMHA(16, 4, batch_first=True)
    holder.plain = nn.MultiheadAttention(16, 4, batch_first=True)
    holder.declared = nn.MultiheadAttention(16, 4, batch_first=True)
    _, names = rewrite_attention(holder)
    assert names == ["plain", "declared"]
    holder.edgemm_attention = {"declared": AttentionPattern(("MultiheadAttention",))}
    _, names = rewrite_attention(holder)
    assert names == ["plain"]
