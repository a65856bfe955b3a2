"""Crafted data against edgemm's readers (edgemm/safeio.py and the sample-file reader built on it).

Hypothesis generates .npz files (every dtype numpy writes, object arrays saved with pickling,
zero-sized and absurd declared shapes, truncated members and archives, lying zip sizes, zip bombs,
bytes that are no zip) and JSON texts (nesting to 10^5 levels, huge strings, NaN tokens, arrays and
scalars at the top). Every call must either return valid data (what numpy / json read, and within
the limits asked for) or raise exactly one EdgemmError whose message is one line; no MemoryError,
RecursionError, ValueError or zipfile.BadZipFile escapes, and nothing takes long.
"""
from __future__ import annotations

import io
import json
import math
import struct
import time
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgemm.data.datasets import load_samples, read_outputs
from edgemm.errors import BundleError, EdgemmError, SpecError
from edgemm.iospec import IOSpec, TensorSpec
from edgemm.safeio import json_depth, parse_json, read_json, read_npz

SETTINGS = settings(max_examples=80, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
CAP = 1 << 20  # per-array limit in the property tests: 1 MiB


def one_line(exc: EdgemmError) -> str:
    msg = str(exc)
    assert msg and "\n" not in msg and "\r" not in msg, repr(msg)
    return msg


# ----------------------------------------------------------------------------- npz generation

DTYPES = ["f4", "<f8", ">f4", "f2", "i1", "<i8", ">i4", "u1", "u2", "?", "U3", "S4", "c8", "M8[s]", "m8[ms]",
          "O", [("a", "<f4"), ("b", "i2")], "V4"]


def _dtype(spec) -> np.dtype:
    return np.dtype(spec)


@st.composite
def npy_bytes(draw) -> bytes:
    """One member's bytes: a real array (any dtype, any small shape incl. zero), a crafted header, or junk."""
    kind = draw(st.sampled_from(["array", "array", "array", "header", "junk"]))
    if kind == "junk":
        return draw(st.binary(max_size=200))
    if kind == "header":  # a header declaring whatever shape, followed by too few bytes
        shape = tuple(draw(st.lists(st.sampled_from([0, 1, 3, 10 ** 6, 10 ** 12, 2 ** 62]), max_size=4)))
        descr = draw(st.sampled_from(["<f4", "|u1", "|O", "<U5", "|V0", "<i8"]))
        buf = io.BytesIO()
        np.lib.format.write_array_header_1_0(buf, {"shape": shape, "fortran_order": draw(st.booleans()), "descr": descr})
        return buf.getvalue() + draw(st.binary(max_size=64))
    dtype = _dtype(draw(st.sampled_from(DTYPES)))
    shape = tuple(draw(st.lists(st.integers(0, 4), max_size=3)))
    if dtype.hasobject:
        arr = np.empty(shape, dtype)
        arr.fill(draw(st.sampled_from([None, "text", 1.5, ("t",)])))
    else:
        arr = np.frombuffer(draw(st.binary(min_size=dtype.itemsize * math.prod(shape),
                                           max_size=dtype.itemsize * math.prod(shape))), dtype).reshape(shape)
        if draw(st.booleans()) and arr.ndim > 1:
            arr = np.asfortranarray(arr)
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=True)
    data = buf.getvalue()
    if draw(st.integers(0, 4)) == 0:  # truncated member
        data = data[: draw(st.integers(0, len(data)))]
    return data


@st.composite
def npz_bytes(draw) -> bytes:
    members = draw(st.lists(st.tuples(st.sampled_from(["x", "y", "image", "audio", "digit", "a.sample_rate"]), npy_bytes()),
                            max_size=4))
    buf = io.BytesIO()
    method = draw(st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA]))
    with zipfile.ZipFile(buf, "w", method) as z, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # duplicate names are one of the crafted cases
        for name, data in members:
            z.writestr(name + ".npy", data)
    out = buf.getvalue()
    damage = draw(st.sampled_from(["none", "none", "truncate", "flip", "prefix"]))
    if damage == "truncate" and out:
        out = out[: draw(st.integers(0, len(out) - 1))]
    elif damage == "flip" and out:
        i = draw(st.integers(0, len(out) - 1))
        out = out[:i] + bytes([out[i] ^ draw(st.integers(1, 255))]) + out[i + 1:]
    elif damage == "prefix":
        out = draw(st.binary(max_size=50)) + out
    return out


def _np_load(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


@SETTINGS
@given(data=npz_bytes(), kinds=st.sets(st.sampled_from("fiubUSc"), min_size=1), need_rows=st.booleans())
def test_read_npz_returns_valid_arrays_or_one_line(tmp_path, data, kinds, need_rows):
    path = tmp_path / "crafted.npz"
    path.write_bytes(data)
    t0 = time.perf_counter()
    try:
        arrays = read_npz(path, "crafted", max_bytes_per_array=CAP, allowed_kinds=tuple(kinds), need_rows=need_rows)
    except EdgemmError as exc:
        assert "crafted" in one_line(exc) and str(path) in str(exc)
        return
    finally:
        assert time.perf_counter() - t0 < 5
    for key, arr in arrays.items():
        assert isinstance(arr, np.ndarray) and not arr.dtype.hasobject and arr.dtype.fields is None
        assert arr.dtype.kind in kinds and arr.nbytes <= CAP
        assert not need_rows or (arr.ndim >= 1 and arr.shape[0] >= 1)
    # nothing lost: what numpy itself reads from an archive that passed
    ref = _np_load(path)
    assert list(ref) == list(arrays)
    for key in ref:
        assert ref[key].dtype == arrays[key].dtype and ref[key].shape == arrays[key].shape
        np.testing.assert_array_equal(ref[key], arrays[key])


def test_valid_npz_round_trips_all_kinds(tmp_path):
    arrays = {"f": np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4), "i": np.arange(5, dtype=">i8"),
              "u": np.full((2, 2), 7, np.uint16), "b": np.array([True, False]), "s": np.int64(8000),
              "t": np.array(["ab", "c"]), "fortran": np.asfortranarray(np.arange(6.0).reshape(2, 3)),
              "empty": np.zeros((0, 3), np.float32)}
    np.savez_compressed(tmp_path / "a.npz", **arrays)
    got = read_npz(tmp_path / "a.npz", "arrays", allowed_kinds=("f", "i", "u", "b", "U"))
    assert list(got) == list(arrays)
    for k, v in arrays.items():
        assert got[k].dtype == v.dtype and got[k].shape == v.shape
        np.testing.assert_array_equal(got[k], v)
    assert got["fortran"].flags.f_contiguous and got["f"].flags.writeable
    assert list(read_npz(tmp_path / "a.npz", "arrays", names={"i", "u"}, allowed_kinds="iu")) == ["i", "u"]


def _header_only_npz(path: Path, shape, descr="<f4", tail=b"\0" * 64):
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"shape": shape, "fortran_order": False, "descr": descr})
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("x.npy", buf.getvalue() + tail)


@pytest.mark.parametrize("shape", [(10 ** 12,), (10 ** 6, 10 ** 6), (2 ** 40, 3)])
def test_a_header_declaring_a_huge_array_fails_at_once(tmp_path, shape):
    p = tmp_path / "huge.npz"
    _header_only_npz(p, shape)
    t0 = time.perf_counter()
    with pytest.raises(BundleError) as exc:
        read_npz(p, "reference outputs")
    assert time.perf_counter() - t0 < 0.5
    assert "over the 4 GiB read per array" in one_line(exc.value) and "'x'" in str(exc.value)


def test_a_header_within_the_limit_but_without_its_data_is_truncated_before_allocating(tmp_path):
    p = tmp_path / "short.npz"
    _header_only_npz(p, (2 ** 29,))  # 2 GiB declared, 64 bytes there
    t0 = time.perf_counter()
    with pytest.raises(BundleError, match="truncated: its header declares 2 GiB of data, the file holds 64 bytes"):
        read_npz(p, "reference outputs")
    assert time.perf_counter() - t0 < 0.5


@pytest.mark.parametrize("arr, match", [
    (np.array([{"a": 1}, None], dtype=object), "Python objects"),
    (np.zeros(3, [("a", "f4"), ("b", "i2")]), "structured"),
    (np.array(["a", "b"]), "dtype <U1"),
    (np.array([b"a"]), "dtype |S1"),
    (np.zeros(2, np.complex64), "complex64"),
])
def test_object_structured_and_string_arrays_are_refused(tmp_path, arr, match):
    p = tmp_path / "odd.npz"
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=True)
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("x.npy", buf.getvalue())
    with pytest.raises(BundleError, match=match) as exc:
        read_npz(p, "parity samples")
    one_line(exc.value)


def test_zip_bomb_is_refused_from_its_declared_size(tmp_path):
    p = tmp_path / "bomb.npz"
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"shape": (64 << 20,), "fortran_order": False, "descr": "|u1"})
    with zipfile.ZipFile(p, "w", zipfile.ZIP_DEFLATED) as z:
        with z.open("x.npy", "w") as f:
            f.write(buf.getvalue())
            for _ in range(64):
                f.write(bytes(1 << 20))
    assert p.stat().st_size < 1 << 20  # 64 MiB of zeros in ~64 kB
    t0 = time.perf_counter()
    with pytest.raises(BundleError, match="declares 64 MiB uncompressed, over the 1 MiB read per array"):
        read_npz(p, "samples", max_bytes_per_array=CAP)
    with pytest.raises(BundleError, match="declares 64 MiB uncompressed, over the 8 MiB read at most"):
        read_npz(p, "samples", max_total_bytes=8 << 20)
    assert time.perf_counter() - t0 < 0.5
    assert read_npz(p, "samples")["x"].shape == (64 << 20,)  # within the default limits it is a real array


def test_a_zip_that_understates_its_sizes_is_refused(tmp_path):
    """A member whose zip headers declare 100 bytes but whose stream inflates to megabytes: zipfile
    stops at the declared size, and the array is refused as truncated or corrupt, never read whole."""
    p = tmp_path / "liar.npz"
    np.savez_compressed(p, x=np.zeros(1 << 20, np.float32))
    raw = bytearray(p.read_bytes())
    for sig, off in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):  # local header, central directory: uncompressed size
        i = raw.find(sig)
        raw[i + off:i + off + 4] = struct.pack("<I", 100)
    p.write_bytes(bytes(raw))
    with pytest.raises(BundleError) as exc:
        read_npz(p, "samples")
    assert "truncated" in one_line(exc.value) or "cannot read" in str(exc.value)


@pytest.mark.parametrize("content", [b"", b"not a zip", b"PK\x03\x04" + b"\0" * 30, np.zeros(3).tobytes()])
def test_bytes_that_are_no_npz(tmp_path, content):
    p = tmp_path / "x.npz"
    p.write_bytes(content)
    with pytest.raises(SpecError, match=r"(cannot read samples .*x\.npz as \.npz|samples .*x\.npz is not an \.npz file)") as exc:
        read_npz(p, "samples", error=SpecError)
    one_line(exc.value)


def test_missing_folder_and_fifo_are_refused(tmp_path):
    import os

    with pytest.raises(BundleError, match="not found"):
        read_npz(tmp_path / "none.npz", "samples")
    with pytest.raises(BundleError, match="not a regular file"):
        read_npz(tmp_path, "samples")
    fifo = tmp_path / "pipe.npz"
    os.mkfifo(fifo)
    with pytest.raises(BundleError, match="not a regular file"):  # reading it would block for ever
        read_npz(fifo, "samples")
    with pytest.raises(BundleError, match="not a regular file"):
        read_json(fifo, "report")


def test_too_many_members_and_zero_rows(tmp_path):
    p = tmp_path / "many.npz"
    np.savez(p, **{f"a{i}": np.zeros(1) for i in range(5)})
    with pytest.raises(BundleError, match="holds 5 files, over the 4 arrays"):
        read_npz(p, "samples", max_arrays=4)
    np.savez(p, x=np.zeros((0, 3)), y=np.zeros(2))
    assert read_npz(p, "samples")["x"].shape == (0, 3)
    with pytest.raises(BundleError, match=r"'x' has 0 rows \(shape \[0, 3\]\)"):
        read_npz(p, "samples", need_rows=True)
    assert read_npz(p, "samples", need_rows={"y"})["y"].shape == (2,)


# ----------------------------------------------------------------------------------------- JSON

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=30)


@st.composite
def json_texts(draw) -> bytes:
    kind = draw(st.sampled_from(["value", "value", "deep", "nan", "junk", "huge", "bigint"]))
    if kind == "deep":
        depth = draw(st.sampled_from([10, 63, 64, 65, 1000, 10 ** 5]))
        opener = draw(st.sampled_from(["[", '{"k":']))
        closer = "]" if opener == "[" else "}"
        body = opener * depth + draw(st.sampled_from(["1", '"[[["', ""])) + closer * draw(st.sampled_from([depth, 0, 1]))
        return body.encode()
    if kind == "nan":
        return ('{"a": ' + draw(st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "-1e400", "nan"])) + "}").encode()
    if kind == "junk":
        return draw(st.binary(max_size=100))
    if kind == "huge":
        return b'{"a": "' + b"x" * draw(st.sampled_from([10, 2 << 20])) + b'"}'
    if kind == "bigint":
        return b'{"a": ' + b"9" * draw(st.sampled_from([10, 5000])) + b"}"
    return json.dumps(draw(json_values)).encode()


@SETTINGS
@given(text=json_texts())
def test_read_json_returns_an_object_or_one_line(tmp_path, text):
    path = tmp_path / "report.json"
    path.write_bytes(text)
    t0 = time.perf_counter()
    try:
        got = read_json(path, "report", max_bytes=1 << 20)
    except BundleError as exc:
        assert str(path) in one_line(exc) and "report" in str(exc)
        return
    finally:
        assert time.perf_counter() - t0 < 5
    assert isinstance(got, dict) and len(text) <= 1 << 20 and json_depth(text) <= 64
    assert got == json.loads(text)  # nothing lost
    stack = [got]  # every number that came back is finite (no NaN, Infinity or overflowed float)
    while stack:
        v = stack.pop()
        stack.extend(v.values() if isinstance(v, dict) else v if isinstance(v, list) else [])
        assert not isinstance(v, float) or math.isfinite(v)


def test_json_limits_name_the_file_and_the_fix(tmp_path):
    p = tmp_path / "manifest.json"
    p.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(BundleError, match=r"nests 100000 levels deep \(at most 64 are read\); re-export") as exc:
        read_json(p, "manifest", fix="re-export the bundle")
    assert str(p) in one_line(exc.value)
    p.write_text('{"a": "' + "x" * 2000 + '"}')
    with pytest.raises(BundleError, match="is 1.96 KiB, over the 1 KiB read at most"):
        read_json(p, "manifest", max_bytes=1024)
    p.write_text('{"cosine": NaN}')
    with pytest.raises(BundleError, match="NaN is not a JSON number"):
        read_json(p, "manifest")
    p.write_text("[1, 2]")
    with pytest.raises(SpecError, match="not a JSON object \\(it holds a list\\)"):
        read_json(p, "table", error=SpecError)
    p.write_bytes(b'{"a": "\xff"}')
    with pytest.raises(BundleError, match="not valid JSON"):
        read_json(p, "manifest")
    assert parse_json('{"a": "]]]]{{", "b": [[{"c": 1.5}]]}', "text") == {"a": "]]]]{{", "b": [[{"c": 1.5}]]}
    assert json_depth(b'{"a": "[[[[[[\\"[[[", "b": [[]]}') == 3


# ------------------------------------------------------------------------ sample files and outputs

SPEC = IOSpec(inputs=[TensorSpec("x", "float32", ("batch", 3))],
              outputs=[TensorSpec("digit", "float32", ("batch", 10)), TensorSpec("speaker", "float32", ("batch", 6))])


@SETTINGS
@given(n=st.integers(0, 3), m=st.integers(0, 3), width=st.sampled_from([3, 4]),
       xdtype=st.sampled_from(["f4", "f8", "i8", "U2", "O"]),
       digit=st.one_of(st.none(), st.lists(st.integers(-2, 12), max_size=4),
                       st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=4)),
       label_2d=st.booleans(), extra=st.sampled_from([None, "digits", "fsdd_file", "x.sample_rate"]))
def test_load_samples_returns_samples_or_one_line(tmp_path, n, m, width, xdtype, digit, label_2d, extra):
    arrays = {"x": np.ones((n, width), xdtype) if xdtype != "O" else np.array([None] * n, object)}
    if digit is not None:
        y = np.asarray(digit)
        arrays["digit"] = y.reshape(-1, 1) if label_2d else y
    if extra:
        arrays[extra] = np.arange(m)
    p = tmp_path / "s.npz"
    with zipfile.ZipFile(p, "w") as z:  # np.savez refuses nothing; write object arrays as a crafted file would
        for k, v in arrays.items():
            buf = io.BytesIO()
            np.save(buf, v, allow_pickle=True)
            z.writestr(k + ".npy", buf.getvalue())
    try:
        s = load_samples(p, SPEC)
    except SpecError as exc:
        one_line(exc)
        return
    assert len(s) == n >= 1 and s.feeds["x"].dtype == np.float32 and s.feeds["x"].shape == (n, 3)
    for y in s.labels.values():
        assert y.dtype == np.int64 and y.shape == (n,) and ((0 <= y) & (y < 10)).all()


@pytest.mark.parametrize("arrays, match", [
    ({"x": np.zeros((0, 3), np.float32)}, r"'x' has 0 rows"),
    ({"x": np.float32(1)}, r"'x' has a scalar"),
    ({"x": np.zeros((2, 3), np.float32), "digit": np.zeros((2, 10))}, r"labels 'digit' have shape \[2, 10\], expected \[2\] class indices \(one-hot"),
    ({"x": np.zeros((2, 3), np.float32), "digit": np.array([1, 10])}, r"hold class 10, but head 'digit' has 10 classes \(0..9\)"),
    ({"x": np.zeros((2, 3), np.float32), "digit": np.array([-1, 0])}, r"hold class -1"),
    ({"x": np.zeros((2, 3), np.float32), "digit": np.array([1, 2, 3])}, r"labels 'digit' have 3 rows, the inputs 2"),
    ({"x": np.zeros((2, 3), np.float32), "digit": np.array([0.5, 1])}, r"fractional or non-finite"),
    ({"x": np.zeros((2, 3), np.float32), "digits": np.array([0, 1])}, r"key 'digits' names no input or output \(did you mean 'digit'\?\)"),
    ({"x": np.zeros((2, 3), np.float32), "digit": np.array([True, False])}, r"dtype bool, expected integer class indices"),
])
def test_bad_sample_files_are_one_line_each(tmp_path, arrays, match):
    p = tmp_path / "s.npz"
    np.savez(p, **arrays)
    with pytest.raises(SpecError, match=match) as exc:
        load_samples(p, SPEC)
    assert str(p) in one_line(exc.value)


def test_float_labels_with_whole_values_are_taken(tmp_path):
    p = tmp_path / "s.npz"
    np.savez(p, x=np.zeros((2, 3), np.float32), digit=np.array([3.0, 9.0]), fsdd_file=np.array(["a.wav", "b.wav"]))
    assert load_samples(p, SPEC).labels["digit"].tolist() == [3, 9]


def test_reference_outputs_missing_heads_wrong_widths_and_rows(tmp_path):
    p = tmp_path / "ref.npz"
    fix = "re-export the bundle"
    np.savez(p, digit=np.zeros((4, 10), np.float32), speaker=np.zeros((4, 6), np.float32))
    assert set(read_outputs(p, SPEC, 4, "reference outputs", fix)) == {"digit", "speaker"}
    np.savez(p, digit=np.zeros((4, 10), np.float32))
    with pytest.raises(BundleError, match=r"lacks head\(s\) speaker .*re-export the bundle"):
        read_outputs(p, SPEC, 4, "reference outputs", fix)
    np.savez(p, digit=np.zeros((4, 9), np.float32), speaker=np.zeros((4, 6), np.float32))
    with pytest.raises(BundleError, match=r"head 'digit' has shape \[4, 9\], expected \[4, 10\]"):
        read_outputs(p, SPEC, 4, "reference outputs", fix)
    np.savez(p, digit=np.zeros((3, 10), np.float32), speaker=np.zeros((3, 6), np.float32))
    with pytest.raises(BundleError, match=r"expected \[4, 10\] \(4 parity samples"):
        read_outputs(p, SPEC, 4, "reference outputs", fix)
    np.savez(p, digit=np.zeros((0, 10), np.float32), speaker=np.zeros((0, 6), np.float32))
    with pytest.raises(BundleError, match="0 rows"):
        read_outputs(p, SPEC, 0, "reference outputs", fix)
