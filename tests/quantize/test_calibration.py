"""CalibrationSource: validation against the IOSpec, counting, coverage, synthetic and missing data."""
from __future__ import annotations

import numpy as np
import pytest

import edgemm
from edgemm.data.calibration import calibration_source
from edgemm.errors import EdgemmError, SpecError
from edgemm.iospec import IOSpec, TensorSpec

SPEC = IOSpec(
    inputs=(TensorSpec("x", "float32", ("batch", 4)), TensorSpec("tokens", "int64", ("batch", 6))),
    outputs=(TensorSpec("y", "float32", ("batch", 2)),),
)


def _good(n=120):
    rng = np.random.default_rng(0)
    return {"x": rng.standard_normal((n, 4)).astype(np.float32), "tokens": rng.integers(0, 50, (n, 6)).astype(np.int64)}


def test_npz_set_counts_samples_over_all_inputs_and_reports_coverage(tmp_path):
    np.savez(tmp_path / "c.npz", **_good(120))
    src = calibration_source(tmp_path / "c.npz", SPEC)
    assert len(src) == 120
    assert src.feeds["tokens"].dtype == np.int64  # token ids stay int64
    cov = src.manifest_entry("minmax")["coverage"]
    assert set(cov) == {"x", "tokens"} and cov["tokens"]["min"] >= 0 and cov["x"]["p99"] > cov["x"]["p1"]


def test_directory_of_one_sample_files(tmp_path):
    good = _good(110)
    for i in range(110):
        np.savez(tmp_path / f"s{i:03d}.npz", **{k: v[i:i + 1] for k, v in good.items()})
    src = calibration_source(tmp_path, SPEC)
    assert len(src) == 110
    np.testing.assert_array_equal(src.feeds["tokens"][7], good["tokens"][7])


def test_missing_input_is_named(tmp_path):
    np.savez(tmp_path / "c.npz", x=_good()["x"])
    with pytest.raises(SpecError, match="lacks input.*tokens"):
        calibration_source(tmp_path / "c.npz", SPEC)


def test_wrong_dtype_is_an_error_not_a_cast(tmp_path):
    bad = _good()
    bad["tokens"] = bad["tokens"].astype(np.float32)
    np.savez(tmp_path / "c.npz", **bad)
    with pytest.raises(SpecError, match="tokens.*int64"):
        calibration_source(tmp_path / "c.npz", SPEC)


def test_iterable_feeds_are_validated():
    items = [{"x": np.zeros((1, 4), np.float32), "tokens": np.zeros((1, 6), np.int32)}]
    with pytest.raises(SpecError, match="calibration sample 0.*tokens.*int32.*int64"):
        calibration_source(items, SPEC)


def test_misaligned_inputs(tmp_path):
    good = _good(120)
    good["x"] = good["x"][:100]
    np.savez(tmp_path / "c.npz", **good)
    with pytest.raises(SpecError, match="aligned"):
        calibration_source(tmp_path / "c.npz", SPEC)


def test_too_few_samples_warns(edgemm_log):
    items = [{k: v[i:i + 1] for k, v in _good(20).items()} for i in range(20)]
    src = calibration_source(items, SPEC)
    assert len(src) == 20
    assert any("only 20 calibration samples" in r.getMessage() for r in edgemm_log)


def test_no_calibration_is_an_error_naming_the_fix():
    with pytest.raises(EdgemmError, match='calibration=.*"synthetic"'):
        calibration_source(None, SPEC)


def test_synthetic_is_marked_and_warned(edgemm_log):
    src = calibration_source("synthetic", SPEC)
    assert src.synthetic and src.manifest_entry("minmax")["synthetic"] is True
    assert any("speed measurements only" in r.getMessage() for r in edgemm_log)


def test_int8_export_without_calibration_leaves_nothing(two_branch_data, tmp_path):
    model, spec, _, evaluation = two_branch_data()
    out = tmp_path / "b"
    with pytest.raises(EdgemmError, match="int8=True needs calibration data"):
        edgemm.export(model, spec=spec, output=out, int8=True, evaluation=evaluation, targets=["onnxruntime"])
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".b.tmp")]
