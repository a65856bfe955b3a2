"""Export-time attention rewrite: the same numbers as nn.MultiheadAttention, fewer layout nodes in the ONNX graph,
the caller's module untouched, and the original module wherever the rewrite cannot be exact."""
from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from edgemm.iospec import IOSpec, TensorSpec
from edgemm.recipe import ExportConfig
from edgemm.stages.export import export_onnx
from edgemm.stages.rewrite import rewrite_attention


def _mha(seed: int = 0, **kw) -> nn.MultiheadAttention:
    torch.manual_seed(seed)
    m = nn.MultiheadAttention(**{"embed_dim": 16, "num_heads": 4, **kw}).eval()
    with torch.no_grad():  # non-zero biases everywhere: the K bias is dropped and the V bias folded, both must be exact
        for name, p in m.named_parameters():
            if "bias" in name:
                p.normal_(0, 0.5)
    return m


class Holder(nn.Module):
    def __init__(self, attn):
        super().__init__()
        self.attn = attn


def _rewritten(m: nn.MultiheadAttention):
    copy, names = rewrite_attention(Holder(m))
    assert names == ["attn"]
    return copy.attn


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("shared_kv", [True, False])
@pytest.mark.parametrize("weights", ["none", "average", "per_head"])
def test_same_outputs_as_multihead_attention(batch_first, shared_kv, weights):
    m = _mha(batch_first=batch_first)
    r = _rewritten(m)
    g = torch.Generator().manual_seed(1)
    shape = (lambda b, n: (b, n, 16)) if batch_first else (lambda b, n: (n, b, 16))
    q, k = torch.randn(shape(3, 5), generator=g), torch.randn(shape(3, 7), generator=g)
    v = k if shared_kv else torch.randn(shape(3, 7), generator=g)
    kw = {"need_weights": weights != "none", "average_attn_weights": weights == "average"}
    with torch.no_grad():
        want, want_w = m(q, k, v, **kw)
        got, got_w = r(q, k, v, **kw)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    if weights == "none":
        assert got_w is None and want_w is None
    else:
        torch.testing.assert_close(got_w, want_w, atol=1e-6, rtol=1e-5)


def test_separate_key_value_widths_and_no_bias():
    m = _mha(kdim=10, vdim=12, bias=False, batch_first=True)
    r = _rewritten(m)
    q, k, v = torch.randn(2, 5, 16), torch.randn(2, 7, 10), torch.randn(2, 7, 12)
    with torch.no_grad():
        torch.testing.assert_close(r(q, k, v, need_weights=False)[0], m(q, k, v, need_weights=False)[0], atol=1e-5, rtol=1e-5)


def test_attention_masks_run_the_original_module():
    m = _mha(batch_first=True)
    r = _rewritten(m)
    q, k = torch.randn(2, 5, 16), torch.randn(2, 7, 16)
    causal = torch.ones(5, 7, dtype=torch.bool).triu(1)
    with torch.no_grad():
        want = m(q, k, k, attn_mask=causal, need_weights=False)[0]
        got = r(q, k, k, attn_mask=causal, need_weights=False)[0]
    assert torch.equal(got, want)  # the very same computation, not an approximation of it


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("kind", ["bool", "float"])
def test_key_padding_mask_is_computed_by_the_rewrite(batch_first, kind):
    m = _mha(batch_first=batch_first)
    r = _rewritten(m)
    g = torch.Generator().manual_seed(2)
    shape = (lambda b, n: (b, n, 16)) if batch_first else (lambda b, n: (n, b, 16))
    q, k = torch.randn(shape(3, 5), generator=g), torch.randn(shape(3, 7), generator=g)
    pad = torch.zeros(3, 7, dtype=torch.bool)
    pad[0, -3:] = True
    pad[2, -1:] = True
    mask = pad if kind == "bool" else torch.zeros(3, 7).masked_fill(pad, float("-inf"))
    with torch.no_grad():
        want = m(q, k, k, key_padding_mask=mask, need_weights=False)[0]
        got = r(q, k, k, key_padding_mask=mask, need_weights=False)[0]
        calls = []
        hook = r.original.register_forward_hook(lambda *a: calls.append(1))
        r(q, k, k, key_padding_mask=mask, need_weights=False)
        hook.remove()
    assert calls == []  # the rewrite computed it, the original module was not called
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def _container(kind: str, batch_first: bool, norm_first: bool) -> nn.Module:
    torch.manual_seed(3)
    if kind == "encoder":
        layer = nn.TransformerEncoderLayer(16, 4, 32, dropout=0.1, batch_first=batch_first, norm_first=norm_first)
        return nn.TransformerEncoder(layer, 2).eval()
    layer = nn.TransformerDecoderLayer(16, 4, 32, dropout=0.1, batch_first=batch_first, norm_first=norm_first)
    return nn.TransformerDecoder(layer, 2).eval()


@pytest.mark.parametrize("kind", ["encoder", "decoder"])
@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("padded", [False, True])
def test_transformer_layers_same_outputs(kind, batch_first, norm_first, padded):
    """nn.TransformerEncoder/Decoder read their attention's attributes (batch_first, in_proj_bias ...) and take a
    fused fast path in eval mode; the rewritten copy must run the rewrite and give torch's numbers."""
    model = _container(kind, batch_first, norm_first)
    copy, names = rewrite_attention(model)
    per_layer = ["self_attn"] if kind == "encoder" else ["self_attn", "multihead_attn"]
    assert names == [f"layers.{i}.{a}" for i in range(2) for a in per_layer]
    g = torch.Generator().manual_seed(4)
    x = torch.randn((3, 5, 16) if batch_first else (5, 3, 16), generator=g)
    mem = torch.randn((3, 7, 16) if batch_first else (7, 3, 16), generator=g)
    kw = {}
    if padded:
        pad = torch.zeros(3, 5, dtype=torch.bool)
        pad[1, -2:] = True
        mem_pad = torch.zeros(3, 7, dtype=torch.bool)
        mem_pad[0, -3:] = True
        kw = {"src_key_padding_mask": pad} if kind == "encoder" else {"tgt_key_padding_mask": pad, "memory_key_padding_mask": mem_pad}
    args = (x,) if kind == "encoder" else (x, mem)
    calls = []
    hooks = [copy.get_submodule(n).original.register_forward_hook(lambda *a: calls.append(1)) for n in names]
    with torch.no_grad():
        got = copy(*args, **kw)
        fast = model(*args, **kw)  # torch's fused path (nested tensors: padded positions come back as zeros)
        torch.backends.mha.set_fastpath_enabled(False)
        try:
            want = model(*args, **kw)  # the path torch.export traces
        finally:
            torch.backends.mha.set_fastpath_enabled(True)
    for h in hooks:
        h.remove()
    assert calls == [] and not got.is_nested
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    fast = fast.to_padded_tensor(0.0) if fast.is_nested else fast
    if padded and kind == "encoder":  # compare where the fused path computes anything
        keep = ~pad if batch_first else ~pad.T
        torch.testing.assert_close(got[keep], fast[keep], atol=1e-5, rtol=1e-5)
    else:
        torch.testing.assert_close(got, fast, atol=1e-5, rtol=1e-5)
    assert isinstance(model.layers[0].self_attn, nn.MultiheadAttention)  # the caller's model is untouched


def test_unsupported_variants_and_the_callers_module_stay():
    model = nn.Sequential()
    model.add_module("kv", nn.MultiheadAttention(16, 4, add_bias_kv=True))
    model.add_module("zero", nn.MultiheadAttention(16, 4, add_zero_attn=True))
    same, names = rewrite_attention(model)
    assert same is model and names == []
    holder = Holder(_mha(batch_first=True))
    copy, names = rewrite_attention(holder)
    assert names == ["attn"] and isinstance(holder.attn, nn.MultiheadAttention) and copy is not holder


class CrossAV(nn.Module):
    """Two token streams, attention both ways (avnet's fusion in small)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.a2b = nn.MultiheadAttention(16, 4, batch_first=True)
        self.b2a = nn.MultiheadAttention(16, 4, batch_first=True)
        self.head = nn.Linear(32, 3)
        self.eval()

    def forward(self, a, b):
        x, _ = self.a2b(a, b, b, need_weights=False)
        y, _ = self.b2a(b, a, a)  # need_weights left at its default: the weights are unused
        return self.head(torch.cat([x.mean(1), y.mean(1)], 1))


def test_export_has_fewer_layout_nodes_and_the_same_outputs(tmp_path):
    spec = IOSpec(inputs=(TensorSpec("a", "float32", ("batch", 6, 16)), TensorSpec("b", "float32", ("batch", 9, 16))),
                  outputs=(TensorSpec("out", "float32", ("batch", 3)),))
    model = CrossAV()
    args = (torch.randn(2, 6, 16), torch.randn(2, 9, 16))
    feeds = {"a": np.random.default_rng(0).standard_normal((3, 6, 16)).astype(np.float32),
             "b": np.random.default_rng(1).standard_normal((3, 9, 16)).astype(np.float32)}
    with torch.no_grad():
        want = model(*(torch.from_numpy(feeds[n]) for n in ("a", "b"))).numpy()
    counts, outs = {}, {}
    for rewrite in (True, False):
        path = tmp_path / f"{rewrite}.onnx"
        info = export_onnx(model, args, spec, path, ExportConfig(rewrite_attention=rewrite))
        assert info["rewritten_attention"] == (["a2b", "b2a"] if rewrite else [])
        counts[rewrite] = Counter(n.op_type for n in onnx.load(str(path)).graph.node)
        outs[rewrite] = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    np.testing.assert_allclose(outs[True], want, atol=1e-5)
    np.testing.assert_allclose(outs[False], want, atol=1e-5)
    layout = lambda c: c["Transpose"] + c["Reshape"] + c["Squeeze"] + c["Unsqueeze"] + c["Gather"]  # noqa: E731
    assert layout(counts[True]) < layout(counts[False]), (counts[True], counts[False])
    assert sum(counts[True].values()) < sum(counts[False].values())


class TokenGRU(nn.Module):
    """A user's text model, not shaped for edgemm: token ids -> Embedding (+ learned positions) -> a batch-first
    TransformerEncoder with a padding mask from the ids -> masked mean pool, beside a GRU over the embeddings -> head."""

    def __init__(self, vocab: int = 60, width: int = 32, length: int = 12):
        super().__init__()
        torch.manual_seed(0)
        self.emb = nn.Embedding(vocab, width, padding_idx=0)
        self.pos = nn.Parameter(torch.randn(1, length, width) * 0.1)
        self.enc = nn.TransformerEncoder(nn.TransformerEncoderLayer(width, 4, 64, dropout=0.1, batch_first=True), 2)
        self.gru = nn.GRU(width, 24, batch_first=True)
        self.head = nn.Linear(width + 24, 5)

    def forward(self, tokens):
        pad = tokens == 0
        x = self.emb(tokens) + self.pos
        h = self.enc(x, src_key_padding_mask=pad)
        keep = (~pad).unsqueeze(-1).float()
        pooled = (h * keep).sum(1) / keep.sum(1).clamp(min=1.0)
        _, last = self.gru(x)
        return self.head(torch.cat([pooled, last[0]], 1))


def _token_ids(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, 60, size=(n, 12))
    for i, length in enumerate(rng.integers(4, 13, size=n)):
        ids[i, length:] = 0  # right padding, as a tokenizer pads
    return ids.astype(np.int64)


@pytest.mark.slow
def test_token_model_exports_int8_on_onnxruntime_and_openvino(tmp_path):
    import json

    import edgemm

    np.savez(tmp_path / "calib.npz", tokens=_token_ids(64, 1))
    model = TokenGRU().eval()
    b = edgemm.export(model, example_inputs={"tokens": _token_ids(2, 0)}, output=tmp_path / "b", int8=True,
                      calibration=tmp_path / "calib.npz", targets="onnxruntime,openvino")
    onnx_entry = next(a for a in b.manifest["artifacts"] if a["path"].endswith("fp32.onnx"))
    assert onnx_entry["extra"]["rewritten_attention"] == ["enc.layers.0.self_attn", "enc.layers.1.self_attn"]
    parity = json.loads((tmp_path / "b/reports/parity.json").read_text())["artifacts"]
    seen = set()
    for entry in parity.values():
        cos = entry["outputs"]["output_0"]["cosine"]
        seen.add((entry["backend"], entry["precision"]))
        assert cos >= (0.9999 if entry["precision"] == "fp32" else 0.98), entry
    assert {("onnxruntime", "fp32"), ("openvino", "fp32"), ("onnxruntime", "int8"), ("openvino", "int8")} <= seen
    feeds = {"tokens": _token_ids(5, 7)}
    with torch.no_grad():
        want = model(torch.from_numpy(feeds["tokens"])).numpy()
    for backend in ("onnxruntime", "openvino"):
        with edgemm.load(tmp_path / "b", backend=backend, precision="fp32") as rt:
            np.testing.assert_allclose(rt.run(feeds)["output_0"], want, atol=1e-5)
