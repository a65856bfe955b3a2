"""INT8 for transformers: a hand-built BERT-like encoder (int64 token ids through nn.Embedding, an int64 attention mask
turned into an additive float mask of finfo.min, nn.TransformerEncoder, masked mean pooling) exported with --int8 for
onnxruntime and openvino. Real quantizers, real runtimes, real bundles; no labels (the parity floor judges INT8).

Before this issue OpenVINO's Q/DQ scheme put int8 Q/DQ on the mask Add (range +-3.4e38) and its INT8 lost the model
(cosine about 0.2); verify then failed the whole export and every artifact was lost.
"""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from torch import nn

import edgemm
from edgemm.backends.base import RunnerOptions
from edgemm.compare import Comparator
from edgemm.data.calibration import CalibrationSource, calibration_source
from edgemm.iospec import IOSpec, TensorSpec
from edgemm.stages.quantize import graph as G
from edgemm.stages.quantize.qdq import SCHEMES, calibrate, preprocess_for_quantization, quantize_qdq

VOCAB, LEN, WIDTH, OUT = 200, 16, 64, 32
FLOOR = 0.98
# The export stage's attention rewrite replaces nn.MultiheadAttention by a module nn.TransformerEncoderLayer's fast-path
# check cannot read (no in_proj_bias): these tests export torch's own attention.
EXPORT = {"rewrite_attention": False}


class MaskedEncoder(nn.Module):
    def __init__(self, seed: int = 0, layers: int = 2):
        super().__init__()
        torch.manual_seed(seed)
        self.tok = nn.Embedding(VOCAB, WIDTH)
        self.pos = nn.Parameter(torch.randn(1, LEN, WIDTH) * 0.1)
        layer = nn.TransformerEncoderLayer(WIDTH, 4, dim_feedforward=128, dropout=0.0, batch_first=True)
        self.enc = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(WIDTH)
        self.proj = nn.Linear(WIDTH, OUT)
        self.eval()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        x = self.tok(input_ids) + self.pos[:, : input_ids.shape[1]]
        additive = (1.0 - attention_mask.to(x.dtype)) * torch.finfo(x.dtype).min  # Hugging Face's extended mask
        x = self.enc(x, src_key_padding_mask=additive)
        m = attention_mask.unsqueeze(-1).to(x.dtype)
        return self.proj(self.norm((x * m).sum(1) / m.sum(1).clamp(min=1.0)))


SPEC = IOSpec(inputs=(TensorSpec("input_ids", "int64", ("batch", LEN)), TensorSpec("attention_mask", "int64", ("batch", LEN))),
              outputs=(TensorSpec("features", "float32", ("batch", OUT), task="embedding"),))


def token_feeds(n: int, seed: int) -> dict[str, np.ndarray]:
    """Valid inputs: ids in the vocabulary, prefix masks of 4..16 tokens, padding id 0 behind them."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(4, LEN + 1, size=n)
    mask = (np.arange(LEN)[None, :] < lengths[:, None]).astype(np.int64)
    ids = np.where(mask == 1, rng.integers(2, VOCAB, size=(n, LEN)), 0).astype(np.int64)
    return {"input_ids": ids, "attention_mask": mask}


@contextmanager
def edgemm_records():
    records: list[logging.LogRecord] = []

    class H(logging.Handler):
        def emit(self, record):
            records.append(record)

    log = logging.getLogger("edgemm")
    h, old = H(level=logging.DEBUG), log.level
    log.addHandler(h)
    log.setLevel(logging.INFO)
    try:
        yield records
    finally:
        log.removeHandler(h)
        log.setLevel(old)


def _lines(records, level=logging.WARNING) -> list[str]:
    return [r.getMessage() for r in records if r.levelno >= level]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("tokens")
    np.savez(d / "calib.npz", **token_feeds(120, 1))
    return d / "calib.npz", token_feeds(48, 7)  # held-out: never calibrated or checked on


@pytest.fixture(scope="module")
def bundle(data, tmp_path_factory):
    calib, _ = data
    out = tmp_path_factory.mktemp("enc") / "b"
    with edgemm_records() as records:
        b = edgemm.export(MaskedEncoder(), spec=SPEC, output=out, int8=True, calibration=calib,
                          targets=["onnxruntime", "openvino"], speed_guard=False,  # speed: not the subject here, and slow
                          options={"export": EXPORT, "verify": {"cosine_min_int8": FLOOR}, "quantize": {"search_minutes": 1.0}})
    return b, records


# ------------------------------------------------------------------ the Q/DQ graph around the mask


def _mask_qdq_violations(model: onnx.ModelProto) -> list[str]:
    """Quantized masks in a Q/DQ graph (node names may be stripped). The masked Adds are found by data flow: one input
    computed from the attention mask alone (the additive mask), the other not (the scores). A violation: that mask
    input arrives through DequantizeLinear, the Add's output (the masked scores, down to -3.4e38) is quantized, or a
    Softmax reads a DequantizeLinear. (The {0, 1} mask of the pooling feeds a Mul: quantizing it is exact.)"""
    g = model.graph
    consts = {t.name for t in g.initializer} | {o for n in g.node if n.op_type == "Constant" for o in n.output}
    origin = {i.name: frozenset([i.name]) for i in g.input if i.name not in consts}
    for n in g.node:  # topological order
        deps = frozenset().union(*[origin.get(x, frozenset()) for x in n.input if x and x not in consts])
        for o in n.output:
            origin[o] = deps
    producers = {o: n for n in g.node for o in n.output}
    consumers = defaultdict(list)
    for n in g.node:
        for x in n.input:
            consumers[x].append(n)
    mask_only = {t for t, d in origin.items() if d == {"attention_mask"}}
    bad, masked_adds = [], 0
    for n in g.node:
        if n.op_type == "Add" and any(x in mask_only for x in n.input) and not all(x in mask_only for x in n.input):
            masked_adds += 1
            for x in n.input:
                if x in mask_only and x in producers and producers[x].op_type == "DequantizeLinear":
                    bad.append(f"the additive mask {x} reaches its Add through DequantizeLinear")
            if any(c.op_type == "QuantizeLinear" for c in consumers[n.output[0]]):
                bad.append(f"the masked scores {n.output[0]} are quantized")
        if n.op_type == "Softmax" and n.input[0] in producers and producers[n.input[0]].op_type == "DequantizeLinear":
            bad.append(f"Softmax reads a DequantizeLinear ({n.input[0]})")
    assert masked_adds == 2, f"expected one masked Add per layer, found {masked_adds}"
    return bad


def test_mask_chain_is_found_and_kept_out_of_every_qdq_scheme(bundle, data, tmp_path):
    b, _ = bundle
    calib_path, _ = data
    pre = preprocess_for_quantization(b.root / "onnx/model.fp32.onnx", tmp_path / "pre.onnx")
    model = G.name_nodes(onnx.load(str(pre)))
    onnx.save(model, str(pre))
    calib = calibration_source(calib_path, SPEC)
    found, tensors = G.mask_like(model, calibrate(pre, calib, "minmax", False))
    ops = defaultdict(int)
    for n in model.graph.node:
        if n.name in found:
            ops[n.op_type] += 1
    # one masked Add and one Softmax per layer, and the chain that builds the mask from the int64 input
    assert ops["Add"] == 2 and ops["Softmax"] == 2 and ops["Mul"] >= 1, dict(ops)
    assert not any(n.op_type in G.WEIGHTED_OPS for n in model.graph.node if n.name in found)
    # ONNX Runtime's quantizer left alone quantizes the mask in both schemes: the check below can fail ...
    ranges = calibrate(pre, calib, "minmax", False)
    for scheme in ("ort", "trt"):
        naive = tmp_path / f"naive-{scheme}.onnx"
        quantize_qdq(pre, naive, calib, SCHEMES[scheme], ranges)
        assert _mask_qdq_violations(onnx.load(str(naive))), scheme
    # histogram calibration (percentile, entropy) cannot bin a -3.4e38 mask; with the mask tensors left out it measures the rest
    few = CalibrationSource({k: v[:8] for k, v in calib.feeds.items()}, calib.source, calib.sha256)
    with pytest.raises(ValueError, match="bins"), np.errstate(all="ignore"):
        calibrate(pre, few, "percentile", False)
    ranges = calibrate(pre, few, "percentile", False, skip=tensors)
    assert ranges and not set(ranges) & tensors and all(np.isfinite(v).all() for v in ranges.values())
    # ... and holds on every INT8 artifact of the bundle (both targets' Q/DQ files)
    int8 = [a for a in b.artifacts if a.precision == "int8" and a.format == "onnx"]
    assert int8
    for a in int8:
        assert _mask_qdq_violations(onnx.load(str(b.root / a.path))) == [], a.path
        assert any(k["reason"] == G.MASK_REASON and k["nodes"] >= 4 for k in a.extra["kept_float"]), a.extra["kept_float"]


def test_each_target_meets_the_floor_on_held_out_inputs_or_is_left_out_in_one_line(bundle, data):
    b, records = bundle
    _, held = data
    left = {e["target"]: e for e in b.manifest.get("int8_left_out", [])}
    warnings = _lines(records)
    fp32 = Comparator(SPEC, held).run_artifact("onnxruntime", b.root / "onnx/model.fp32.onnx")
    for target in ("onnxruntime", "openvino"):
        said = [w for w in warnings if w.startswith(f"warning: {target}") and "left out" in w]
        arts = [a for a in b.artifacts if a.precision == "int8" and a.backend == target]
        if target in left:
            assert len(said) == 1 and not arts and left[target]["cosine"] < FLOOR
            continue
        assert said == [] and len(arts) == 1
        art = arts[0]
        got = Comparator(SPEC, held).run_artifact(target, b.root / art.path, RunnerOptions(threads=2, precision="int8"))
        cos = Comparator(SPEC, held).parity(fp32, got)["features"]["cosine"]
        assert cos >= FLOOR, (target, cos)
        checks = art.extra["checks"]
        assert checks["parity_floor"] == FLOOR and checks["floor_met"] is True and checks["cosine"] >= FLOOR
        assert checks["task"] == {"features": "embedding"} and checks["agreement"] is None  # no argmax of an embedding
        assert checks["scores"]["features"]["recall@1"] >= 0.9
        assert set(art.extra["search"]) >= {"minutes", "seconds", "capped", "skipped"}
    # every fp32 artifact is there whatever happened to INT8, and verify (which raises on a breach) passed them all
    assert {(a.backend, a.precision) for a in b.artifacts} >= {("onnxruntime", "fp32"), ("openvino", "fp32")}
    parity = json.loads((b.root / b.manifest["reports"]["parity"]).read_text())["artifacts"]
    int8 = {k: v for k, v in parity.items() if v["precision"] == "int8"}
    assert len(int8) == 2 - len(left) and all(v["outputs"]["features"]["cosine"] >= FLOOR for v in int8.values())


def test_nncf_keeps_the_mask_out_of_its_fake_quantize(data, tmp_path):
    ov = pytest.importorskip("openvino")
    calib, held = data
    b = edgemm.export(MaskedEncoder(), spec=SPEC, output=tmp_path / "b", int8=True, calibration=calib, targets=["openvino"],
                      speed_guard=False, quantizer={"openvino": "nncf"},
                      options={"export": EXPORT, "verify": {"cosine_min_int8": FLOOR}})
    art = next(a for a in b.artifacts if a.precision == "int8")
    assert art.format == "openvino-ir"
    model = ov.Core().read_model(str(b.root / art.path))
    fq = 0
    for op in model.get_ops():
        fq += op.get_type_name() == "FakeQuantize"
        # the mask reaches attention (fused: ScaledDotProductAttention's 4th input; else an Add) never through FakeQuantize
        if op.get_type_name() == "ScaledDotProductAttention" and op.get_input_size() > 3:
            assert op.input(3).get_source_output().get_node().get_type_name() != "FakeQuantize"
        if op.get_type_name() == "Softmax":
            assert op.input(0).get_source_output().get_node().get_type_name() != "FakeQuantize"
    assert fq > 4  # an INT8 model
    fp32 = Comparator(SPEC, held).run_artifact("onnxruntime", b.root / "onnx/model.fp32.onnx")
    got = Comparator(SPEC, held).run_artifact("openvino", b.root / art.path, RunnerOptions(threads=2, precision="int8"))
    assert Comparator(SPEC, held).parity(fp32, got)["features"]["cosine"] >= FLOOR


def test_a_capped_search_says_what_it_skipped_and_the_target_is_left_out(data, tmp_path):
    """A floor no INT8 reaches (cosine 1.5): the first candidate is judged and rejected, the search for parts to keep
    float starts and stops at its 0.01 min cap; the target's INT8 is left out in one line, the export succeeds."""
    calib, _ = data
    with edgemm_records() as records:
        b = edgemm.export(MaskedEncoder(), spec=SPEC, output=tmp_path / "b", int8=True, calibration=calib,
                          targets=["onnxruntime"], speed_guard=False,
                          options={"export": EXPORT, "verify": {"cosine_min_int8": 1.5}, "quantize": {"search_minutes": 0.01}})
    assert not [a for a in b.artifacts if a.precision == "int8"]
    assert {(a.backend, a.precision) for a in b.artifacts} >= {("onnxruntime", "fp32"), ("torch", "fp32")}
    (entry,) = b.manifest["int8_left_out"]
    assert entry["target"] == "onnxruntime" and entry["parity_floor"] == 1.5 and 0.9 < entry["cosine"] < 1.5
    search = entry["search"]
    assert search["minutes"] == 0.01 and search["capped"] is True and search["skipped"]
    assert any(s.startswith("sensitivity: ") for s in search["skipped"])
    left = [w for w in _lines(records) if "left out" in w]
    assert len(left) == 1 and "onnxruntime" in left[0] and "0.01 min cap" in left[0] and "--int8-strict" in left[0]
    capped = [r.getMessage() for r in records if "stopped at its 0.01 min cap" in r.getMessage() and "skipped" in r.getMessage()]
    assert len(capped) == 1 and f"skipped {len(search['skipped'])} step(s)" in capped[0]
    assert "speed" not in b.manifest["reports"]  # no INT8 artifact: nothing to report speed of


def test_strict_int8_that_misses_its_floor_exits_2_in_one_line(data, tmp_path):
    calib, _ = data
    m = MaskedEncoder()
    ex = token_feeds(2, 0)
    batch = torch.export.Dim("batch", min=1, max=1024)
    with torch.no_grad():
        program = torch.export.export(m, (torch.from_numpy(ex["input_ids"]), torch.from_numpy(ex["attention_mask"])),
                                      dynamic_shapes={"input_ids": {0: batch}, "attention_mask": {0: batch}})
    pt2 = tmp_path / "encoder.pt2"
    torch.export.save(program, str(pt2))
    out = tmp_path / "b"
    root = str(Path(edgemm.__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p))
    r = subprocess.run([sys.executable, "-m", "edgemm", "export", str(pt2), "--int8", "--calib", str(calib),
                        "--target", "onnxruntime", "--no-speed-guard", "--int8-strict", "--int8-search-minutes", "0.01",
                        "--option", "verify.cosine_min_int8=1.5", "-o", str(out)],
                       capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 2, (r.stdout[-2000:], r.stderr[-2000:])
    errors = [line for line in r.stderr.splitlines() if line.startswith("edgemm: error:")]
    assert len(errors) == 1 and "onnxruntime" in errors[0] and "--int8-strict" in errors[0] and "parity floor" in errors[0]
    assert "Traceback" not in r.stderr and not out.exists()
