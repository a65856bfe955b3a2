"""[export] tune_threads: each CPU artifact timed at the export's threads against one thread (paired rounds, real
runs), the faster count recorded in the artifact, and used by edgemm.load, by verify's ranking and by every runner
built through RunnerOptions.for_artifact unless the caller gives threads. Which count wins is the machine's answer:
never asserted."""
from __future__ import annotations

import json
import shutil

import pytest

import edgemm
from edgemm.backends.base import RunnerOptions
from edgemm.bench.run import BenchConfig, benchmark
from edgemm.bundle import Bundle

from models.tiny import TinyAV, tiny_feeds, tiny_spec


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    out = tmp_path_factory.mktemp("threads") / "bundle"
    edgemm.export(TinyAV(0), example_inputs=tiny_feeds(2), spec=tiny_spec(), output=out, targets=["onnxruntime", "openvino"],
                  threads=2, options={"export": {"tune_threads": True}})
    return out


def test_every_cpu_artifact_records_its_measurement(tuned):
    m = json.loads((tuned / "manifest.json").read_text())
    timed = [a for a in m["artifacts"] if a["backend"] in ("onnxruntime", "openvino")]
    assert timed and all(a["backend"] != "torch" for a in timed)
    for a in timed:
        t = a["extra"]["threads"]
        assert t["of"] == 2 and t["chosen"] in (1, 2) and t["rounds"] >= 2
        low, high = t["interval"]
        assert low <= t["one_over_n"] <= high
        # one thread is recorded for the runtime only where it was faster with confidence
        assert (a["extra"].get("runner", {}).get("threads") == 1) == (t["chosen"] == 1) == (high < 1)
    ref = next(a for a in m["artifacts"] if a["backend"] == "torch")
    assert "threads" not in ref["extra"]


def test_the_recorded_count_is_used_unless_the_caller_gives_one(tuned, tmp_path):
    copy = tmp_path / "b"
    shutil.copytree(tuned, copy)
    m = json.loads((copy / "manifest.json").read_text())
    ort = next(a for a in m["artifacts"] if a["backend"] == "onnxruntime" and a["precision"] == "fp32")
    ort["extra"].setdefault("runner", {})["threads"] = 1  # as if one thread had won here
    (copy / "manifest.json").write_text(json.dumps(m))
    b = Bundle.open(copy)
    art = next(a for a in b.artifacts if a.path == ort["path"] and a.backend == "onnxruntime")
    assert RunnerOptions.for_artifact(art, "cpu").threads == 1
    assert RunnerOptions.for_artifact(art, "cpu", threads=2).threads == 2  # an explicit count is the caller's
    assert RunnerOptions.for_artifact(art, "cpu", threads=None).threads == 1
    with edgemm.load(copy, backend="onnxruntime", precision="fp32") as rt:
        assert rt._runner.session.get_session_options().intra_op_num_threads == 1
        rt.run(tiny_feeds(1))
    with edgemm.load(copy, backend="onnxruntime", precision="fp32", threads=2) as rt:
        assert rt._runner.session.get_session_options().intra_op_num_threads == 2
    # verify's ranking times it as edgemm.load runs it; a plain `edgemm bench` at the threads it is given
    cfg = dict(batches=(1,), modes=("model",), seconds=0.1, rounds=1, threads=2, extra_rounds=0, backends=("onnxruntime",),
               precisions=("fp32",), warn_unstable=False)
    as_loaded = benchmark(b, BenchConfig(**cfg, recorded_threads=True))["runs"]
    as_given = benchmark(b, BenchConfig(**cfg))["runs"]
    assert [r["threads"] for r in as_loaded if r["id"] == ort["path"]] == [1]
    assert [r["threads"] for r in as_given if r["id"] == ort["path"]] == [2]
