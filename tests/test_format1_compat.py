"""A bundle written by edgemm before bundle format 2 (tests/data/format1_tiny, commit c6c4c49) opens as one graph
``main`` and verifies, runs, benchmarks and compiles unchanged."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import edgemm
from edgemm.bundle import Bundle
from edgemm.cli import main

FORMAT1 = Path(__file__).parent / "data" / "format1_tiny"


@pytest.fixture
def old_bundle(tmp_path):
    dest = tmp_path / "format1"
    shutil.copytree(FORMAT1, dest)
    return dest


def test_format1_opens_as_graph_main(old_bundle):
    b = Bundle.open(old_bundle)
    assert b.manifest["format_version"] == 1 and "graphs" not in b.manifest
    assert b.graphs() == ["main"] and b.default_graph == "main"
    view = b.graph("main")
    assert view.spec == b.spec and view.artifacts == b.artifacts
    assert view.parity["path"] == "data/parity_samples.npz"


def test_format1_verifies_and_runs(old_bundle):
    assert main(["verify", str(old_bundle)]) == 0
    parity = json.loads((old_bundle / "reports/parity.json").read_text())
    assert all(min(o["cosine"] for o in e["outputs"].values()) >= 0.9999
               for e in parity["artifacts"].values() if e["precision"] == "fp32" and "outputs" in e)
    with np.load(old_bundle / "data/parity_samples.npz") as z:
        feeds = {k: z[k] for k in z.files}
    with np.load(old_bundle / "data/parity_reference.npz") as z:
        want = {k: z[k] for k in z.files}
    for backend in ("onnxruntime", "openvino"):
        with edgemm.load(old_bundle, backend=backend, precision="fp32") as rt:
            got = rt.run(feeds)
        for k, v in want.items():
            np.testing.assert_allclose(got[k], v, rtol=1e-4, atol=1e-5)
    assert Bundle.open(old_bundle).manifest["format_version"] == 1  # verify rewrote reports, not the format


def test_format1_benches_and_compiles(old_bundle, tmp_path):
    report = tmp_path / "bench.json"
    assert main(["bench", str(old_bundle), "--backends", "onnxruntime", "--batch", "1", "--rounds", "1", "--seconds", "0.2",
                 "--json", str(report)]) == 0
    assert {r["graph"] for r in json.loads(report.read_text())["runs"]} == {"main"}
    assert main(["compile", str(old_bundle), "--target", "onnxruntime"]) == 0
    b = Bundle.open(old_bundle)
    assert b.manifest["format_version"] == 1
    assert any(a.extra.get("source") == "onnx/model.fp32.onnx" for a in b.artifacts)  # the compiled artifact, listed
