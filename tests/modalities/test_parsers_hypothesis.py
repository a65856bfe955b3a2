"""Property tests of the parsers this work adds: the IMU CSV reader and URI (examples/modality_plugin, imported
from its source folder), text pre-processing params and tokenizer files. Any input gives a result or one
EdgemmError line, never another exception."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from edgemm.errors import EdgemmError
from edgemm.iospec import TensorSpec, TextPreprocess

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples" / "modality_plugin"))
from edgemm_imu.csvreader import parse_imu_lines, parse_imu_uri  # noqa: E402

finite = st.floats(min_value=-1e4, max_value=1e4, allow_nan=False, allow_infinity=False, width=32)


@given(rows=st.lists(st.lists(finite, min_size=6, max_size=6), min_size=1, max_size=40), with_t=st.booleans(), header=st.booleans())
@settings(max_examples=60, deadline=None)
def test_imu_csv_round_trip(rows, with_t, header):
    lines = (["t,ax,ay,az,gx,gy,gz" if with_t else "ax,ay,az,gx,gy,gz"] if header else [])
    lines += [",".join(([f"{i * 0.005:.6f}"] if with_t else []) + [repr(float(v)) for v in r]) for i, r in enumerate(rows)]
    times, samples = parse_imu_lines(lines)
    np.testing.assert_array_equal(samples, np.asarray(rows, np.float32))
    assert (times is not None) == with_t


@given(text=st.text(max_size=300))
@settings(max_examples=150, deadline=None)
def test_imu_csv_garbage_is_one_line(text):
    try:
        parse_imu_lines(text.splitlines())
    except EdgemmError as exc:
        assert "\n" not in str(exc)


@given(uri=st.one_of(st.text(max_size=60), st.builds(lambda s, p, q: f"{s}:{p}?{q}", st.sampled_from(["imu-csv", "imu-serial", "imu"]),
                                                       st.text(max_size=20), st.text(max_size=30))))
@settings(max_examples=150, deadline=None)
def test_imu_uri_gives_options_or_one_line(uri):
    try:
        scheme, path, opts = parse_imu_uri(uri)
    except EdgemmError as exc:
        assert "\n" not in str(exc)
    else:
        assert scheme in ("imu-csv", "imu-serial") and path and all(v > 0 for v in opts.values())


@given(data=st.dictionaries(st.sampled_from(["tokenizer", "max_length", "pad_id", "unk_id", "lowercase", "kind", "padding",
                                             "attention_mask", "maxlen"]),
                            st.one_of(st.integers(-3, 100), st.text(max_size=12), st.booleans(), st.none()), max_size=5))
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_text_params_parse_or_one_line(data):
    try:
        t = TensorSpec.from_dict({"name": "ids", "modality": "text", "dtype": "int64", "shape": ["batch", 8], "preprocessing": data}, "input")
    except EdgemmError as exc:
        assert "\n" not in str(exc)
    else:
        assert isinstance(t.preprocessing, TextPreprocess)
        again = TensorSpec.from_dict(t.to_dict("input"), "input")
        assert again == t


@given(content=st.one_of(st.text(max_size=200), st.binary(max_size=200).map(lambda b: b.decode("latin-1")),
                         st.sampled_from(['{"model": {"type": "WordLevel"}}', '{}', '[]', '{"version": "1.0", "model": null}'])))
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_tokenizer_file_garbage_is_one_line(tmp_path, content):
    from edgemm.data.preprocess import preprocess_input

    p = tmp_path / "tokenizer.json"
    p.write_text(content, encoding="utf-8")
    t = TensorSpec("ids", "int64", ("batch", 4), "text", TextPreprocess("tokenizer.json", 4))
    try:
        preprocess_input(t, "hello", base_dir=tmp_path)
    except EdgemmError as exc:
        assert "\n" not in str(exc)
    else:
        pytest.fail("a garbage tokenizer.json was accepted")
