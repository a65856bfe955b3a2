"""TensorRT backend decisions as pure functions over plain data (versions, shapes, IOSpec, ONNX graphs, layer and
inspector dicts): they run everywhere, with no `tensorrt` module (real or fake). The builds themselves are in
test_trt_build.py under the gpu/tensorrt markers."""
from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto as TP
from onnx import helper, numpy_helper

from edgemm.backends.tensorrt.availability import INSTALL, availability_report
from edgemm.backends.tensorrt.cuda import GpuInfo, device_index, pick_binding
from edgemm.backends.tensorrt.device_arrays import device_array_of, dlpack_view
from edgemm.backends.tensorrt.engines import (bundle_root_of, engine_for_device, inside, matching_engine, rebuild_options,
                                              timing_caches_near)
from edgemm.backends.tensorrt.fp16 import fp16_cast
from edgemm.backends.tensorrt.layers import dla_fallback, engine_summary, fp32_pinned_layers, onnx_node_of
from edgemm.backends.tensorrt.onnx_checks import is_2_4, sparse_decision, sparse_layers, trt_qdq_problems
from edgemm.backends.tensorrt.options import TensorRTOptions
from edgemm.backends.tensorrt.plan import TrtVersion, build_plan
from edgemm.backends.tensorrt.portability import (DeviceInfo, EngineKey, engine_stem, rebuild_decision,
                                                  reusable_timing_caches, timing_cache_name)
from edgemm.backends.tensorrt.profiles import (Profile, derive_profiles, dynamic_network_inputs, profiles_for_spec,
                                               select_profile, split_axis)
from edgemm.backends.tensorrt.runner import graph_key, split_feeds
from edgemm.errors import BackendUnavailable, BundleError, ConfigError, EdgemmError, SpecError, UnsupportedFeature
from edgemm.iospec import IOSpec, TensorSpec
from edgemm.options import build_options, option_fields

RNG = np.random.default_rng(0)


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _spec(axes=None) -> IOSpec:
    return IOSpec(inputs=(TensorSpec("image", "float32", ("batch", 3, 8, 8)), TensorSpec("audio", "float32", ("batch", 1, 8, 10))),
                  outputs=(TensorSpec("cls", "float32", ("batch", 4)),), axes=axes or {})


# ------------------------------------------------------------------ optimization profiles


def test_one_profile_comes_from_the_iospec_axis_ranges():
    (p,) = profiles_for_spec(_spec({"batch": {"min": 1, "opt": 4, "max": 32}}))
    assert p.shapes["image"] == ((1, 3, 8, 8), (4, 3, 8, 8), (32, 3, 8, 8))
    assert p.shapes["audio"] == ((1, 1, 8, 10), (4, 1, 8, 10), (32, 1, 8, 10))
    assert p.to_dict()["image"] == {"min": [1, 3, 8, 8], "opt": [4, 3, 8, 8], "max": [32, 3, 8, 8]}
    assert Profile.from_dict(p.to_dict()) == p


def test_several_profiles_split_the_range_geometrically_and_consistently_across_inputs():
    assert split_axis(1, 1, 64, 3) == [(1, 1, 4), (5, 5, 16), (17, 17, 64)]
    assert split_axis(1, 8, 64, 3) == [(1, 4, 4), (5, 8, 16), (17, 17, 64)]  # the declared opt, clamped into each
    profiles = profiles_for_spec(_spec({"batch": [1, 8, 64]}), 3)
    assert len(profiles) == 3
    for p in profiles:  # inputs sharing the batch axis get the same sub-range
        assert [s[0] for s in p.shapes["image"]] == [s[0] for s in p.shapes["audio"]]
    lows = [p.shapes["image"][0][0] for p in profiles]
    highs = [p.shapes["image"][2][0] for p in profiles]
    assert lows == [1, 5, 17] and highs == [4, 16, 64]  # contiguous, covering 1..64
    assert split_axis(2, 2, 5, 4) == [(2, 2, 2), (3, 3, 3), (4, 4, 4), (5, 5, 5)]


@pytest.mark.parametrize("ranges, count, words", [
    ({"x": ((1, 3), (4, 3), (2, 3))}, 1, "min <= opt <= max"),
    ({"x": ((1, 3), (1, 3, 1), (2, 3))}, 1, "different ranks"),
    ({"x": ((0, 3), (1, 3), (2, 3))}, 1, ">= 1"),
    ({"x": ((1, 3), (1, 3), (3, 3))}, 4, "cannot split"),
    ({"x": ((2, 3), (2, 3), (2, 3))}, 2, "no input has a dynamic axis"),
    ({"x": ((1, 3), (1, 3), (2, 3))}, 0, "positive integer"),
])
def test_invalid_profile_ranges_are_refused_in_one_line(ranges, count, words):
    with pytest.raises(SpecError) as exc:
        derive_profiles(ranges, count)
    assert words in str(exc.value) and "\n" not in str(exc.value)


def test_the_runner_picks_the_covering_profile_tuned_closest_and_refuses_shapes_outside_all():
    profiles = derive_profiles({"x": ((1, 4), (1, 4), (64, 4))}, 3)
    assert select_profile(profiles, {"x": (1, 4)}) == 0
    assert select_profile(profiles, {"x": (10, 4)}) == 1
    assert select_profile(profiles, {"x": (64, 4)}) == 2
    with pytest.raises(SpecError, match="outside every optimization profile"):
        select_profile(profiles, {"x": (65, 4)})
    overlapping = [Profile({"x": ((1,), (2,), (8,))}), Profile({"x": ((1,), (8,), (8,))})]
    assert select_profile(overlapping, {"x": (7,)}) == 1  # both cover 7; the second is tuned for 8


def test_network_inputs_are_checked_against_the_profiles():
    (p,) = derive_profiles({"image": ((1, 3, 8, 8), (2, 3, 8, 8), (16, 3, 8, 8)), "tokens": ((1, 16), (1, 16), (1, 16))})
    assert dynamic_network_inputs({"image": (-1, 3, 8, 8), "tokens": (1, 16)}, [p]) == ["image"]
    with pytest.raises(SpecError, match="fixed at 4"):
        dynamic_network_inputs({"image": (-1, 4, 8, 8), "tokens": (1, 16)}, [p])
    with pytest.raises(SpecError, match="does not list"):
        dynamic_network_inputs({"mask": (-1, 16)}, [p])


# ------------------------------------------------------------------ per-version build settings


@pytest.mark.parametrize("precision, source_precision, set_flags, clear_flags, source", [
    ("fp32", "fp32", (), ("TF32",), "fp32"),
    ("fp16", "fp32", ("FP16", "PREFER_PRECISION_CONSTRAINTS"), (), "fp32"),
    ("int8", "int8", ("INT8",), (), "qdq"),
])
def test_tensorrt_10_builds_weakly_typed_with_builder_flags(precision, source_precision, set_flags, clear_flags, source):
    plan = build_plan("10.3.0.26", precision, source_precision=source_precision)
    assert not plan.strongly_typed and plan.network_flags == ()
    assert plan.set_flags == set_flags and plan.clear_flags == clear_flags and plan.source == source
    assert plan.pin_fp32_layers == (precision == "fp16")
    assert plan.version == "10.3.0"


@pytest.mark.parametrize("precision, source_precision, source", [("fp32", "fp32", "fp32"), ("fp16", "fp32", "fp16-cast"),
                                                                 ("int8", "int8", "qdq")])
def test_tensorrt_11_is_strongly_typed_without_precision_flags(precision, source_precision, source):
    plan = build_plan(TrtVersion(11, 0, 0), precision, source_precision=source_precision)
    assert plan.strongly_typed and plan.source == source and not plan.pin_fp32_layers
    removed_in_11 = {"FP16", "INT8", "OBEY_PRECISION_CONSTRAINTS", "PREFER_PRECISION_CONSTRAINTS"}
    assert not removed_in_11 & set(plan.set_flags)
    assert plan.network_flags == ()  # STRONGLY_TYPED is deprecated and ignored in 11


def test_build_plan_options_and_refusals():
    sparse_dla = build_plan("10.3", "int8", source_precision="int8", dla_core=1, sparse_weights=True)
    assert sparse_dla.set_flags == ("INT8", "SPARSE_WEIGHTS", "GPU_FALLBACK") and sparse_dla.dla_core == 1
    assert build_plan("10.3", "fp32", tf32=True).clear_flags == ()
    assert "GPU_FALLBACK" not in build_plan("10.3", "fp16", dla_core=0, gpu_fallback=False).set_flags
    assert build_plan("11.4", "fp16", dla_core=0).dla_core == 0
    with pytest.raises(EdgemmError, match="Q/DQ model only"):
        build_plan("11.0", "int8", source_precision="fp32")
    with pytest.raises(EdgemmError, match="fp32 ONNX"):
        build_plan("10.3", "fp16", source_precision="int8")
    with pytest.raises(UnsupportedFeature, match="fp16 and int8 networks only"):
        build_plan("10.3", "fp32", dla_core=0)
    with pytest.raises(UnsupportedFeature, match="no DLA support"):
        build_plan("11.2", "fp16", dla_core=0)
    with pytest.raises(BackendUnavailable, match="too old"):
        build_plan("8.6.1", "fp32")
    with pytest.raises(EdgemmError, match="no precision"):
        build_plan("10.3", "bf16")
    assert TrtVersion.parse("10.13.2.6.post1") == TrtVersion(10, 13, 2) and str(TrtVersion.parse("11")) == "11.0.0"


# ------------------------------------------------------------------ portability: keys, caches, rebuilds


def _record(cc="8.6", version="10.3.0", precision="fp16", dla_core=None, source="onnx/model.fp32.onnx"):
    profiles = derive_profiles({"x": ((1, 4), (1, 4), (8, 4))})
    return {"version": version, "compute_capability": cc, "precision": precision, "profiles": [p.to_dict() for p in profiles],
            "dla_core": dla_core, "source": source, "options": {"profiles": 1, "dla_core": dla_core}}


ORIN = DeviceInfo("Orin", (8, 7), "10.3.0", dla_cores=2)
RTX = DeviceInfo("RTX 4090", (8, 9), "10.3.0", dla_cores=0)


def test_engine_keys_names_and_timing_cache_reuse():
    profiles = tuple(derive_profiles({"x": ((1, 4), (2, 4), (8, 4))}))
    key = EngineKey((8, 6), "10.3.0.26", "fp16", profiles)
    assert key.tag.startswith("sm86-trt10.3.0-fp16-") and len(key.tag.split("-")[-1]) == 12
    other = EngineKey((8, 6), "10.3.0", "fp16", tuple(derive_profiles({"x": ((1, 4), (2, 4), (16, 4))})))
    assert other.tag != key.tag  # profiles are part of the key
    assert engine_stem("int8", (8, 7), "10.3.0.30") == "model.int8.sm87-trt10.3.0"
    names = [timing_cache_name((8, 6), "10.3.0", "fp16"), timing_cache_name((8, 6), "10.3.0", "int8"),
             timing_cache_name((8, 9), "10.3.0", "fp16"), timing_cache_name((8, 6), "10.4.0", "fp16"), "model.fp16.plan"]
    assert reusable_timing_caches(names, (8, 6), "10.3.0") == ["timing.fp16.sm86-trt10.3.0.cache", "timing.int8.sm86-trt10.3.0.cache"]


def test_rebuild_decisions_from_the_engine_record():
    here = DeviceInfo("A", (8, 6), "10.3.0", 0)
    assert rebuild_decision(_record(), here).action == "use"
    d = rebuild_decision(_record(cc="8.7"), here)
    assert d.action == "rebuild" and "compute capability 8.7" in d.reasons[0]
    d = rebuild_decision(_record(version="10.1.0"), here)
    assert d.action == "rebuild" and "TensorRT 10.1.0" in d.reasons[0]
    assert rebuild_decision(_record(dla_core=0), here).action == "rebuild"  # no DLA here
    assert rebuild_decision(None, here).action == "rebuild"
    refused = rebuild_decision(_record(cc="7.2"), here, allow_rebuild=False)
    line = refused.line("model.fp16.sm72-trt10.3.0.plan")
    assert refused.action == "refuse" and "\n" not in line and "edgemm compile" in line and "7.2" in line


def test_matching_sibling_engine_and_rebuild_options():
    records = {"a.plan": _record(cc="8.7"), "b.plan": _record(cc="8.9"), "c.plan": _record(cc="8.9", precision="int8")}
    assert matching_engine(records, RTX, "fp16", "onnx/model.fp32.onnx") == "b.plan"
    assert matching_engine(records, RTX, "int8", "onnx/model.fp32.onnx") == "c.plan"
    assert matching_engine(records, RTX, "fp16", "graphs/text/onnx/model.fp32.onnx") is None
    assert rebuild_options({"dla_core": 1, "profiles": 2}, RTX) == {"dla_core": None, "profiles": 2}
    assert rebuild_options({"dla_core": 1}, ORIN) == {"dla_core": 1}


def _bundle_with_engine(tmp_path, record):
    root = tmp_path / "b"
    (root / "tensorrt").mkdir(parents=True)
    (root / "onnx").mkdir()
    (root / "manifest.json").write_text("{}")
    (root / "onnx" / "model.fp32.onnx").write_bytes(b"onnx bytes")
    plan = root / "tensorrt" / "model.fp16.sm87-trt10.3.0.plan"
    plan.write_bytes(b"engine for orin")
    plan.with_suffix(".json").write_text(json.dumps({"tensorrt": record}))
    return root, plan


def test_loading_an_engine_uses_refuses_or_rebuilds_into_the_user_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    root, plan = _bundle_with_engine(tmp_path, _record(cc="8.7"))
    spec = IOSpec(inputs=(TensorSpec("x", "float32", ("batch", 4)),), outputs=(TensorSpec("y", "float32", ("batch", 4)),),
                  axes={"batch": [1, 1, 8]})

    def no_build(*args):
        raise AssertionError("no build expected")

    assert engine_for_device(plan, spec, ORIN, allow_rebuild=True, build_fn=no_build)[0] == b"engine for orin"
    with pytest.raises(BundleError, match="rebuilding is turned off"):
        engine_for_device(plan, spec, RTX, allow_rebuild=False, build_fn=no_build)

    calls = []

    class Built:
        engine = b"engine for rtx"
        record = {"precision": "fp16"}

    def build_fn(source, precision, source_precision, options):
        calls.append((source, precision, source_precision, options))
        return Built()

    engine, rec = engine_for_device(plan, spec, RTX, allow_rebuild=True, build_fn=build_fn)
    assert engine == b"engine for rtx" and len(calls) == 1
    assert calls[0][0] == root / "onnx" / "model.fp32.onnx" and calls[0][1:3] == ("fp16", "fp32")
    assert (tmp_path / "cache" / "edgemm" / "tensorrt") in [p.parent for p in [tmp_path / rec["rebuilt"]]]
    assert plan.read_bytes() == b"engine for orin"  # the bundle is never rewritten on load
    engine_for_device(plan, spec, RTX, allow_rebuild=True, build_fn=build_fn)
    assert len(calls) == 1  # the second load reuses the rebuilt engine

    # a sibling engine built on this device from the same source wins over a rebuild
    sib = plan.parent / "model.fp16.sm89-trt10.3.0.plan"
    sib.write_bytes(b"sibling")
    sib.with_suffix(".json").write_text(json.dumps({"tensorrt": _record(cc="8.9")}))
    assert engine_for_device(plan, spec, RTX, allow_rebuild=True, build_fn=no_build)[0] == b"sibling"


def test_engine_paths_stay_inside_the_bundle_and_timing_caches_are_found(tmp_path):
    root, plan = _bundle_with_engine(tmp_path, _record(source="../../etc/passwd"))
    assert bundle_root_of(plan) == root.resolve()
    with pytest.raises(BundleError, match="leaves the bundle"):
        inside(root, "../../etc/passwd")
    (root / "tensorrt" / timing_cache_name((8, 7), "10.3.0", "int8")).write_bytes(b"cache-orin")
    (root / "tensorrt" / timing_cache_name((8, 9), "10.3.0", "int8")).write_bytes(b"cache-rtx")
    assert timing_caches_near(root / "onnx" / "model.fp32.onnx", tmp_path / "staging", ORIN) == [b"cache-orin"]


# ------------------------------------------------------------------ Q/DQ validity and 2:4 sparsity


def _qdq_conv(zp_dtype=TP.INT8, zp_value=0, w_axis=0, act_per_channel=False, weight_dtype=np.int8, quantize_w=True):
    """x -> Q -> DQ -> Conv(W: int8 -> DQ per channel) -> y, the shape TensorRT's explicit quantization takes."""
    w = RNG.integers(-100, 100, size=(4, 3, 3, 3)).astype(weight_dtype)
    act_scale = np.full(3, 0.02, np.float32) if act_per_channel else np.array(0.02, np.float32)
    zp_np = {TP.INT8: np.int8, TP.UINT8: np.uint8}[zp_dtype]
    inits = [numpy_helper.from_array(act_scale, "s_x"), numpy_helper.from_array(np.array(zp_value, zp_np), "zp_x"),
             numpy_helper.from_array(w, "W_q"), numpy_helper.from_array(np.full(4, 0.01, np.float32), "s_w"),
             numpy_helper.from_array(np.zeros(4, np.int8), "zp_w"), numpy_helper.from_array(np.zeros(4, np.float32), "b")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "s_x", "zp_x"], ["x_q"], name="q_x", axis=1),
             helper.make_node("DequantizeLinear", ["x_q", "s_x", "zp_x"], ["x_dq"], name="dq_x", axis=1),
             helper.make_node("DequantizeLinear", ["W_q", "s_w", "zp_w"], ["W"], name="dq_w", axis=w_axis)]
    nodes.append(helper.make_node("Conv", ["x_dq", "W" if quantize_w else "W_f", "b"], ["y"], name="conv", pads=[1, 1, 1, 1]))
    if not quantize_w:
        inits.append(numpy_helper.from_array(w.astype(np.float32), "W_f"))
    g = helper.make_graph(nodes, "qdq", [helper.make_tensor_value_info("x", TP.FLOAT, ["N", 3, 8, 8])],
                          [helper.make_tensor_value_info("y", TP.FLOAT, ["N", 4, 8, 8])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_a_symmetric_int8_qdq_graph_is_tensorrt_valid_and_runs_in_onnxruntime():
    m = _qdq_conv()
    onnx.checker.check_model(m)
    assert trt_qdq_problems(m) == []
    y = ort.InferenceSession(m.SerializeToString()).run(None, {"x": RNG.standard_normal((2, 3, 8, 8)).astype(np.float32)})[0]
    assert y.shape == (2, 4, 8, 8) and np.isfinite(y).all()


@pytest.mark.parametrize("kwargs, words", [
    ({"zp_dtype": TP.UINT8}, "zero-point dtype uint8"),
    ({"zp_value": 3}, "non-zero zero-point"),
    ({"w_axis": 1}, "per-channel axis 1 is not the output-channel axis 0"),
    ({"act_per_channel": True}, "per-channel scales on an activation"),
    ({"weight_dtype": np.uint8}, "dequantizes a uint8 constant"),
    ({"quantize_w": False}, "only some inputs are quantized"),
])
def test_qdq_graphs_tensorrt_cannot_build_are_named(kwargs, words):
    problems = trt_qdq_problems(_qdq_conv(**kwargs))
    assert any(words in p for p in problems), problems


def test_qdq_format_only_and_q_dq_pairs():
    m = _qdq_conv()
    m.graph.node.append(helper.make_node("Relu", ["x_q"], ["bad"], name="relu_on_int8"))
    assert any("feeds Relu directly" in p for p in trt_qdq_problems(m))
    m = _qdq_conv()
    m.graph.node.append(helper.make_node("MatMulInteger", ["x_q", "W_q"], ["mmi"], name="mmi"))
    m.graph.node.append(helper.make_node("QLinearAdd", ["a", "b"], ["c"], name="qadd", domain="com.microsoft"))
    problems = trt_qdq_problems(m)
    assert any("QOperator-format ops (MatMulInteger)" in p for p in problems)
    assert any("com.microsoft::QLinearAdd" in p for p in problems)
    fp32 = helper.make_model(helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                                               [helper.make_tensor_value_info("x", TP.FLOAT, [1])],
                                               [helper.make_tensor_value_info("y", TP.FLOAT, [1])]))
    assert any("no QuantizeLinear/DequantizeLinear" in p for p in trt_qdq_problems(fp32))


def test_onnxruntime_quantizers_default_uint8_output_is_refused_and_its_symmetric_int8_output_accepted(tmp_path):
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    w = numpy_helper.from_array(RNG.standard_normal((4, 3, 3, 3)).astype(np.float32), "W")
    g = helper.make_graph([helper.make_node("Conv", ["x", "W"], ["c"], name="conv", pads=[1, 1, 1, 1]),
                           helper.make_node("Relu", ["c"], ["y"], name="relu")], "f",
                          [helper.make_tensor_value_info("x", TP.FLOAT, [1, 3, 8, 8])],
                          [helper.make_tensor_value_info("y", TP.FLOAT, [1, 4, 8, 8])], [w])
    fp32 = tmp_path / "f.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), fp32)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{"x": RNG.standard_normal((1, 3, 8, 8)).astype(np.float32)} for _ in range(4)])

        def get_next(self):
            return next(self.it, None)

    quantize_static(str(fp32), str(tmp_path / "u8.onnx"), Reader(), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    assert any("uint8" in p for p in trt_qdq_problems(onnx.load(tmp_path / "u8.onnx")))
    quantize_static(str(fp32), str(tmp_path / "s8.onnx"), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                    extra_options={"ActivationSymmetric": True, "WeightSymmetric": True})
    assert trt_qdq_problems(onnx.load(tmp_path / "s8.onnx")) == []


def test_2_4_sparse_weights_are_found_and_decided():
    dense = RNG.standard_normal((8, 8, 3, 3)).astype(np.float32)
    sparse = dense.copy()
    quads = np.moveaxis(sparse, 1, -1).reshape(-1, 4)  # along input channels, as TensorRT's sparse kernels want
    quads[:, :2] = 0
    sparse = np.moveaxis(quads.reshape(8, 3, 3, 8), -1, 1).copy()
    assert is_2_4(sparse, 1) and not is_2_4(dense, 1) and not is_2_4(sparse[:, :6], 1)
    inits = [numpy_helper.from_array(sparse, "Ws"), numpy_helper.from_array(dense, "Wd")]
    g = helper.make_graph([helper.make_node("Conv", ["x", "Ws"], ["a"], name="sparse_conv", pads=[1, 1, 1, 1]),
                           helper.make_node("Conv", ["a", "Wd"], ["y"], name="dense_conv", pads=[1, 1, 1, 1])], "s",
                          [helper.make_tensor_value_info("x", TP.FLOAT, [1, 8, 4, 4])],
                          [helper.make_tensor_value_info("y", TP.FLOAT, [1, 8, 4, 4])], inits)
    layers = sparse_layers(helper.make_model(g))
    assert layers == ["sparse_conv"]
    assert sparse_decision("auto", layers, (8, 6)) == {"enabled": True, "layers": ["sparse_conv"], "note": None}
    assert sparse_decision("auto", [], (8, 6))["enabled"] is False
    assert sparse_decision("off", layers, (8, 6))["enabled"] is False
    assert "no sparse tensor cores" in sparse_decision("on", layers, (7, 5))["note"]


# ------------------------------------------------------------------ the fp16 graph of TensorRT 11


def _float_model():
    rng = np.random.default_rng(1)
    inits = [numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32) * 0.3, "W"),
             numpy_helper.from_array(rng.standard_normal(8).astype(np.float32), "B"),
             numpy_helper.from_array(np.ones(8, np.float32), "ln_s"), numpy_helper.from_array(np.zeros(8, np.float32), "ln_b"),
             numpy_helper.from_array(rng.standard_normal((8, 5)).astype(np.float32) * 0.3, "M")]
    nodes = [helper.make_node("Conv", ["x", "W", "B"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("GlobalAveragePool", ["r"], ["gp"], name="gap"),
             helper.make_node("Flatten", ["gp"], ["f"], name="flat"),
             helper.make_node("LayerNormalization", ["f", "ln_s", "ln_b"], ["n"], name="ln", axis=-1),
             helper.make_node("MatMul", ["n", "M"], ["logits"], name="head"),
             helper.make_node("Softmax", ["logits"], ["prob"], name="softmax", axis=-1)]
    g = helper.make_graph(nodes, "f", [helper.make_tensor_value_info("x", TP.FLOAT, ["N", 3, 8, 8])],
                          [helper.make_tensor_value_info("logits", TP.FLOAT, ["N", 5]),
                           helper.make_tensor_value_info("prob", TP.FLOAT, ["N", 5])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def _types(model) -> dict[str, int]:
    m = onnx.shape_inference.infer_shapes(model)
    return {v.name: v.type.tensor_type.elem_type for v in (*m.graph.value_info, *m.graph.input, *m.graph.output)}


def test_fp16_cast_graph_runs_in_onnxruntime_close_to_fp32_and_keeps_policy_parts_fp32():
    m = _float_model()
    half, report = fp16_cast(m, keep_nodes=["head"])
    onnx.checker.check_model(half, full_check=True)
    types = _types(half)
    by_name = {n.name: n for n in half.graph.node}
    # the policy's node and the default fp32 op (LayerNormalization) compute in fp32 ...
    for name in ("head", "ln"):
        assert all(types[x] == TP.FLOAT for x in (*by_name[name].input, *by_name[name].output) if x in types), name
    # ... the rest in fp16, with fp16 weights
    assert types[by_name["conv"].output[0]] == TP.FLOAT16 and types[by_name["relu"].output[0]] == TP.FLOAT16
    assert {i.name for i in half.graph.initializer} >= {"W__fp16", "B__fp16", "M"}
    # graph inputs and outputs keep their fp32 types (the IOSpec's)
    assert [i.type.tensor_type.elem_type for i in half.graph.input] == [TP.FLOAT]
    assert [o.type.tensor_type.elem_type for o in half.graph.output] == [TP.FLOAT, TP.FLOAT]
    assert report.kept_by_policy == ["head"] and report.fp16_nodes >= 4 and report.casts >= 3
    x = RNG.standard_normal((3, 3, 8, 8)).astype(np.float32)
    ref = ort.InferenceSession(m.SerializeToString()).run(None, {"x": x})
    got = ort.InferenceSession(half.SerializeToString()).run(None, {"x": x})
    for a, b in zip(ref, got):
        assert b.dtype == np.float32 and _cos(a, b) >= 0.999


def test_fp16_cast_of_an_exported_model_matches_fp32(tiny_bundle_dir):
    m = onnx.load(tiny_bundle_dir / "onnx" / "model.fp32.onnx")
    half, report = fp16_cast(m)
    onnx.checker.check_model(half)
    assert report.fp16_nodes > 0
    feeds = {"image": RNG.standard_normal((4, 3, 8, 8)).astype(np.float32), "audio": RNG.standard_normal((4, 1, 8, 10)).astype(np.float32)}
    ref = ort.InferenceSession(m.SerializeToString()).run(None, feeds)
    got = ort.InferenceSession(half.SerializeToString()).run(None, feeds)
    assert [o.name for o in half.graph.output] == [o.name for o in m.graph.output]
    for a, b in zip(ref, got):
        assert _cos(a, b) >= 0.999


def test_fp16_cast_refuses_unknown_keep_nodes_and_control_flow():
    with pytest.raises(EdgemmError, match="'hed' are not in the ONNX graph.*did you mean 'head'"):
        fp16_cast(_float_model(), keep_nodes=["hed"])
    branch = helper.make_graph([helper.make_node("Identity", ["x"], ["z"])], "b", [], [helper.make_tensor_value_info("z", TP.FLOAT, [1])])
    g = helper.make_graph([helper.make_node("If", ["cond"], ["y"], name="if", then_branch=branch, else_branch=branch)], "cf",
                          [helper.make_tensor_value_info("cond", TP.BOOL, []), helper.make_tensor_value_info("x", TP.FLOAT, [1])],
                          [helper.make_tensor_value_info("y", TP.FLOAT, [1])])
    with pytest.raises(UnsupportedFeature, match="control flow"):
        fp16_cast(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]))


# ------------------------------------------------------------------ layer reports


def test_dla_fallback_is_reported_from_the_layer_info():
    layers = {"conv1": {"type": "CONVOLUTION", "can_run_on_dla": True, "onnx_node": "/img/Conv"},
              "ln": {"type": "NORMALIZATION", "can_run_on_dla": False, "onnx_node": "/ln/LayerNormalization"},
              "topk": {"type": "TOPK", "can_run_on_dla": False}}
    rep = dla_fallback(layers, dla_core=0)
    assert rep == {"dla_core": 0, "dla_layers": 1, "gpu_layers": ["/ln/LayerNormalization", "topk"],
                   "gpu_by_type": {"NORMALIZATION": 1, "TOPK": 1}}
    assert dla_fallback(layers, dla_core=None)["gpu_layers"] == []
    with pytest.raises(UnsupportedFeature, match="2 layer\\(s\\) cannot run on DLA core 1.*GPU fallback is off"):
        dla_fallback(layers, dla_core=1, gpu_fallback=False)


def test_layers_map_to_onnx_nodes_for_fp32_pinning():
    nodes = {"/conv/Conv": "Conv", "/conv/Conv_1": "Conv", "/ln/LayerNormalization": "LayerNormalization"}
    assert onnx_node_of("x", "[ONNX Layer: /conv/Conv_1]", nodes) == "/conv/Conv_1"
    assert onnx_node_of("/conv/Conv", None, nodes) == "/conv/Conv"
    assert onnx_node_of("/ln/LayerNormalization_aux", None, nodes) == "/ln/LayerNormalization"
    assert onnx_node_of("/conv/Conv_1_shuffle", None, nodes) == "/conv/Conv_1"  # the longest node name wins
    assert onnx_node_of("/conv/Conv_12", None, nodes) == "/conv/Conv"  # "Conv_1" + "2" is no separator
    assert onnx_node_of("unrelated", None, nodes) is None
    layers = {"a": {"onnx_node": "/ln/LayerNormalization", "onnx_op": "LayerNormalization"}, "b": {"onnx_node": "/conv/Conv", "onnx_op": "Conv"},
              "c": {"onnx_node": "/conv/Conv_1", "onnx_op": "Conv"}}
    assert fp32_pinned_layers(layers, keep_nodes=["/conv/Conv_1"], keep_ops=["LayerNormalization"]) == ["a", "c"]


def test_engine_inspector_json_of_tensorrt_10_and_11():
    v10 = {"Layers": ["conv", "relu"], "Bindings": ["image", "logits"]}
    v11 = {"Layers": [{"Name": "conv"}], "I/O Tensors": [{"Name": "image", "IOMode": "Input"}, {"Name": "logits", "IOMode": "Output"}]}
    assert engine_summary(v10) == {"layers": 2, "inputs": ["image", "logits"], "outputs": []}
    assert engine_summary(v11) == {"layers": 1, "inputs": ["image"], "outputs": ["logits"]}


# ------------------------------------------------------------------ runner helpers


class _CudaArray:
    """An object that publishes the CUDA Array Interface, as CuPy/PyTorch/Numba tensors do (the pointer is never read)."""

    def __init__(self, shape, dtype, strides=None):
        self.__cuda_array_interface__ = {"data": (0x7F0000001000, False), "shape": shape, "typestr": np.dtype(dtype).str,
                                         "strides": strides, "version": 3}


def test_device_inputs_are_recognised_without_copies_and_checked_like_host_feeds():
    spec = _spec({"batch": [1, 2, 8]})
    image, audio = _CudaArray((2, 3, 8, 8), np.float32), np.zeros((2, 1, 8, 10), np.float32)
    host, device = split_feeds({"image": image, "audio": audio})
    assert list(host) == ["audio"] and device["image"].ptr == 0x7F0000001000 and device["image"].shape == (2, 3, 8, 8)
    checked = spec.check_feeds({**host, **{n: d.placeholder() for n, d in device.items()}})
    assert checked["image"].shape == (2, 3, 8, 8)
    with pytest.raises(SpecError, match="has dtype float16"):
        spec.check_feeds({**host, "image": device_array_of(_CudaArray((2, 3, 8, 8), np.float16)).placeholder()})
    with pytest.raises(SpecError, match="not C-contiguous"):
        device_array_of(_CudaArray((2, 3), np.float32, strides=(4, 8)))
    host_dlpack = np.arange(6, dtype=np.int64).reshape(2, 3)
    assert device_array_of(host_dlpack) is None  # DLPack on the CPU is a host array
    view, dev_type = dlpack_view(host_dlpack)
    assert view.ptr == host_dlpack.ctypes.data and view.shape == (2, 3) and view.dtype == np.int64 and dev_type == 1


def test_cuda_graph_key_and_device_selection():
    k = graph_key(0, {"x": (1, 4)}, {"x": 100, "y": 200})
    assert k == graph_key(0, {"x": (1, 4)}, {"y": 200, "x": 100})
    assert k != graph_key(0, {"x": (2, 4)}, {"x": 100, "y": 200})  # shape change: capture again
    assert k != graph_key(0, {"x": (1, 4)}, {"x": 101, "y": 200})  # new buffer (e.g. a device input): capture again
    assert k != graph_key(1, {"x": (1, 4)}, {"x": 100, "y": 200})
    assert [device_index(d) for d in ("cpu", "cuda", "gpu:0", "cuda:3")] == [0, 0, 0, 3]
    with pytest.raises(EdgemmError, match="not a GPU"):
        device_index("npu:0")
    assert pick_binding(True, True) == "cuda-python" and pick_binding(False, True) == "pycuda" and pick_binding(False, False) is None


# ------------------------------------------------------------------ options, availability, CLI


def test_options_seam_validates_in_one_line_and_generates_the_no_rebuild_flag():
    opts = build_options(TensorRTOptions, {"profiles": 3, "fp32_nodes": ["/head/MatMul"], "sparse_weights": "on"}, "r.toml [compile.tensorrt]")
    assert opts.profiles == 3 and opts.fp32_nodes == ("/head/MatMul",) and opts.rebuild is True
    with pytest.raises(ConfigError, match="profiles = 0 is not allowed"):
        build_options(TensorRTOptions, {"profiles": 0}, "r.toml [compile.tensorrt]")
    with pytest.raises(ConfigError, match="did you mean 'auto'"):
        build_options(TensorRTOptions, {"sparse_weights": "atuo"}, "r.toml [compile.tensorrt]")
    with pytest.raises(ConfigError, match="unknown key 'dla_cor'.*did you mean 'dla_core'"):
        build_options(TensorRTOptions, {"dla_cor": 0}, "r.toml [compile.tensorrt]")
    flags = {f.name: f.flag for f in option_fields(TensorRTOptions)}
    assert flags["rebuild"] == "--rebuild" and flags["dla_core"] == "--tensorrt-dla-core"


def test_availability_says_what_is_missing_and_how_to_install_it():
    missing = availability_report(None, None, [], None)
    assert not missing.available and "TensorRT is not installed" in missing.reason
    assert "pip install 'edgemm[tensorrt]'" in missing.install and "pypi.nvidia.com" in missing.install and "JetPack" in missing.install
    broken = availability_report("10.3.0", "TensorRT is installed but does not load (libnvinfer.so.10: cannot open)", [], None)
    assert not broken.available and "libnvinfer" in broken.reason and broken.install == INSTALL
    no_gpu = availability_report("10.3.0", None, [], "no usable CUDA driver")
    assert not no_gpu.available and "no NVIDIA GPU" in no_gpu.reason and "nvidia-smi" in no_gpu.install
    ok = availability_report("10.3.0", None, [GpuInfo(0, "Orin", (8, 7))], None, dla_cores=2)
    assert ok.available and ok.version == "10.3.0" and ok.devices == ("GPU 0: Orin (compute capability 8.7, 2 DLA cores)",)


def test_this_machines_tensorrt_availability_and_the_compile_refusal(tiny_bundle_copy, capsys):
    from edgemm.backends.registry import get_backend
    from edgemm.backends.tensorrt.build import tensorrt_installed
    from edgemm.cli import main

    av = get_backend("tensorrt").availability()
    if av.available:
        pytest.skip(f"TensorRT {av.version} and a GPU are here ({', '.join(av.devices)}); builds run in test_trt_build.py")
    if not tensorrt_installed():  # this test folder, tests/tensorrt/, must not pass for TensorRT itself
        assert "not installed" in av.reason and "pip install 'edgemm[tensorrt]'" in av.install
    assert main(["compile", str(tiny_bundle_copy), "--target", "tensorrt"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("edgemm: error:")
    assert "TensorRT" in err and "pip install 'edgemm[tensorrt]'" in err
    before = sorted(p.relative_to(tiny_bundle_copy) for p in tiny_bundle_copy.rglob("*"))
    assert not any(str(p).startswith("tensorrt") for p in before)  # nothing half-written


def test_a_producer_stream_is_recorded_so_the_runner_waits_for_it():
    arr = _CudaArray((2, 3), np.float32)
    arr.__cuda_array_interface__["stream"] = 1  # legacy default stream: work may be pending there
    assert device_array_of(arr).sync_stream == 1
    arr.__cuda_array_interface__["stream"] = None
    assert device_array_of(arr).sync_stream is None


def test_an_axis_without_a_declared_range_is_capped_for_the_engine_but_a_declared_one_is_kept():
    undeclared = _spec()  # "batch" has no range: the IOSpec's default 1..4096
    (p,) = profiles_for_spec(undeclared, 1, undeclared_max=64)
    assert p.shapes["image"][2] == (64, 3, 8, 8) and p.shapes["image"][0] == (1, 3, 8, 8)
    (p,) = profiles_for_spec(_spec({"batch": [1, 2, 256]}), 1, undeclared_max=64)
    assert p.shapes["image"][2] == (256, 3, 8, 8)
    assert TensorRTOptions().undeclared_axis_max == 64
