"""Speed verdicts on real runs: int8 vs fp32 through ONNX Runtime, decided from interleaved rounds with a 95 %
interval, and the export's latency table, manifest, reports and closing note all quoting that one measurement
(checked from what the export wrote, never by timing); ``edgemm bench --decide`` re-making the verdict here and
recording it; ``edgemm.load`` following the recorded verdict. Timing outcomes are never asserted: each check holds
whatever this machine measured."""
from __future__ import annotations

import json
import logging
import re
import shutil

import numpy as np
import pytest

import edgemm
from edgemm.bench.paired import measure_pair
from edgemm.bench.stats import fmt_ms
from edgemm.cli import main
from edgemm.stages.verify import VerifyResult


@pytest.fixture(scope="module")
def int8_export(tmp_path_factory):
    """The tiny two-input model exported with int8 for onnxruntime, the speed guard on (its search capped at 20 s),
    with every line edgemm logged during the export."""
    from models.tiny import TinyAV, tiny_feeds, tiny_spec

    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record)

    log = logging.getLogger("edgemm")
    h, old = Keep(level=logging.DEBUG), log.level
    log.addHandler(h)
    log.setLevel(logging.INFO)
    try:
        out = tmp_path_factory.mktemp("int8-speed") / "bundle"
        edgemm.export(TinyAV(0), spec=tiny_spec(), example_inputs=tiny_feeds(2), output=out, int8=True,
                      calibration=[tiny_feeds(1, seed=i) for i in range(100)], targets=["onnxruntime"],
                      options={"quantize": {"search_minutes": 0.33}}, threads=2)
    finally:
        log.removeHandler(h)
        log.setLevel(old)
    return out, [r.getMessage() for r in records]


def _int8(root):
    m = json.loads((root / "manifest.json").read_text())
    return next(a for a in m["artifacts"] if a["precision"] == "int8" and a["backend"] == "onnxruntime")


def test_the_manifest_verdict_is_the_interval_s_verdict(int8_export):
    root, _ = int8_export
    sp = _int8(root)["extra"]["speed"]
    assert {"vs_fp32", "batch", "slower"} <= set(sp) and sp["batch"] == 1
    low, high = sp["interval"]
    assert low <= sp["vs_fp32"] <= high and sp["confidence"] == 0.95 and sp["rounds"] >= 2
    assert sp["vs_fp32"] == pytest.approx(sp["int8_ms"] / sp["fp32_ms"], rel=1e-3)
    # slower means "slower with confidence beyond the tolerance", nothing less
    assert sp["slower"] == (sp["verdict"] == "slower") == (sp["rounds"] >= 3 and low > 1 + sp["tolerance"])
    assert sp["verdict"] == ("faster" if high < 1 and sp["rounds"] >= 3 else sp["verdict"])
    assert f"{low:.2f}x-{high:.2f}x of fp32" in sp["text"]
    if sp["verdict"] == "same":
        assert sp["text"].endswith("keeping int8 as asked")
    report = json.loads((root / "reports/speed.json").read_text())["targets"]["onnxruntime"]
    chosen = [c for c in report["candidates"] if c["chosen"]]
    assert len(chosen) == 1 and chosen[0]["verdict"] == sp["verdict"] and report["result"]["slower"] == sp["slower"]
    assert report["result"]["measurement"]["text"] == sp["text"]


def test_latency_table_verdict_and_closing_note_come_from_one_measurement(int8_export):
    root, logged = int8_export
    art = _int8(root)
    sp = art["extra"]["speed"]
    lat = json.loads((root / "reports/latency.json").read_text())
    rows = {r["artifact"]: r for r in lat["runs"]}
    int8_row = rows[art["path"]]
    fp32_id = lat["speed"][art["path"]]["fp32"]
    fp32_row = rows[fp32_id]
    # the table's two rows are the measurement the verdict rests on ...
    assert int8_row["p50_ms"] == pytest.approx(sp["int8_ms"], abs=1e-4)
    assert fp32_row["p50_ms"] == pytest.approx(sp["fp32_ms"], abs=1e-4)
    assert int8_row["source"] == fp32_row["source"] and int8_row["source"].startswith("int8-vs-fp32 measurement")
    assert lat["speed"][art["path"]]["text"] == sp["text"]
    # ... so their order can never contradict it
    if sp["verdict"] == "slower":
        assert int8_row["p50_ms"] > fp32_row["p50_ms"]
    if sp["verdict"] == "faster":
        assert int8_row["p50_ms"] < fp32_row["p50_ms"]
    summary = VerifyResult.from_bundle(edgemm.Bundle.open(root)).summary()
    assert sp["text"] in summary
    shown = re.search(rf"=\s*{re.escape(art['path'])} \(onnxruntime int8\)\s+~?([0-9.]+) /", summary)
    assert shown and shown.group(1) == fmt_ms(int8_row["p50_ms"])
    # the closing note: present unless int8 was faster with confidence, and quoting the same interval and medians
    notes = [m for m in logged if m.startswith("note: onnxruntime:")]
    assert len(notes) == (0 if sp["verdict"] == "faster" else 1), notes
    for note in notes:
        assert sp["text"] in note and f"int8 {fmt_ms(sp['int8_ms'])} ms vs fp32 {fmt_ms(sp['fp32_ms'])} ms" in note
        assert ("picks fp32 here" in note) == sp["slower"]
        if "VNNI" not in (json.loads((root / "reports/speed.json").read_text())["cpu"].get("isa") or "").upper():
            continue
        assert "a CPU with VNNI" not in note  # never advise what this CPU already has


def test_load_follows_the_recorded_verdict(int8_export, tmp_path):
    root, _ = int8_export
    copy = tmp_path / "b"
    shutil.copytree(root, copy)
    sp = _int8(copy)["extra"]["speed"]
    with edgemm.load(copy, backend="onnxruntime") as rt:
        assert (rt.precision == "int8") == (not sp["slower"])
    m = json.loads((copy / "manifest.json").read_text())
    for a in m["artifacts"]:
        if a["precision"] == "int8":  # a verdict inside the noise: the int8 the user asked for, even if measured a hair slower
            a["extra"]["speed"].update(slower=False, verdict="same")
    (copy / "manifest.json").write_text(json.dumps(m))
    lat = json.loads((copy / "reports/latency.json").read_text())
    int8_id = _int8(copy)["path"]
    lat["ranking"]["p50_ms"] = {a: 1.03 if a == int8_id else 1.0 for a in lat["ranking"]["p50_ms"]}
    (copy / "reports/latency.json").write_text(json.dumps(lat))
    with edgemm.load(copy, backend="onnxruntime") as rt:
        assert rt.precision == "int8"


def test_bench_decide_remakes_and_records_the_verdict(int8_export, tmp_path, capsys):
    root, _ = int8_export
    copy = tmp_path / "b"
    shutil.copytree(root, copy)
    before = _int8(copy)["extra"]["speed"]
    out = tmp_path / "bench.json"
    rc = main(["-q", "bench", str(copy), "--backends", "onnxruntime", "--modes", "model", "--batch", "1", "--seconds", "0.2",
               "--extra-rounds", "0", "--decide", "--no-progress", "--json", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    result = json.loads(out.read_text())
    assert result["config"]["rounds"] >= 6
    d = next(x for x in result["decisions"] if x["backend"] == "onnxruntime")
    sp = _int8(copy)["extra"]["speed"]
    assert sp["measured_by"].startswith("edgemm bench --decide") and sp["previous"]["vs_fp32"] == before["vs_fp32"]
    assert sp["slower"] == (sp["verdict"] == "slower") and sp["text"] == d["text"] and sp["decided"]
    # the decision is the table's own measurement: its two p50s are the ratio's inputs
    runs = {(r["id"], r["precision"]): r for r in result["runs"] if r["mode"] == "model" and r["batch"] == 1}
    assert d["int8_ms"] == pytest.approx(runs[(d["id"], "int8")]["p50_ms"])
    assert d["fp32_ms"] == pytest.approx(runs[(d["fp32"], "fp32")]["p50_ms"])
    assert f"decided here: {d['id']} (onnxruntime, batch 1): {d['text']}" in printed
    report = json.loads((copy / "reports/speed.json").read_text())
    assert report["decided"]["decisions"][0]["text"] == d["text"] and "targets" in report  # export's entries kept
    edgemm.Bundle.open(copy)  # hashes and manifest still valid
    with edgemm.load(copy, backend="onnxruntime") as rt:
        assert (rt.precision == "int8") == (not sp["slower"])


def test_paired_measurement_of_a_model_against_itself_is_never_slower(avnet_bundle_dir):
    """A real run through ONNX Runtime on avnet's bundle: the fp32 model against itself. Pairing must cancel the
    machine's drift: the interval holds 1 (or comes close) and the verdict cannot be "slower"."""
    b = edgemm.Bundle.open(avnet_bundle_dir)
    fp32 = next(a for a in b.artifacts if a.backend == "onnxruntime" and a.precision == "fp32")
    feeds = {k: v[:1] for k, v in np.load(avnet_bundle_dir / "data/parity_samples.npz").items()}
    path = avnet_bundle_dir / fp32.path
    res = measure_pair("onnxruntime", b.spec, path, "fp32", path, "fp32", feeds, 2, seconds=4.0, min_rounds=6)
    r = res.ratio
    assert r.rounds >= 2 and r.low <= r.value <= r.high
    assert res.verdict != "slower" and 0.8 < r.value < 1.25 and r.low < 1.05
    d = res.to_dict()
    assert d["a"]["samples"] > 0 and d["machine"]["before"]["cores"] >= 1 and d["text"] == res.verdict_text()
    assert res.describe().startswith("int8 ") and f"{r.rounds} rounds" in res.describe()
