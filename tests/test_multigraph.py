"""A two-graph model through the Python API (an image encoder and a text encoder over int64 tokens, CLIP-style):
one bundle with fp32 and int8 artifacts per graph for onnxruntime and OpenVINO, verified, loaded, benchmarked
and described per graph."""
from __future__ import annotations

import json

import numpy as np
import pytest

import edgemm
from edgemm.bundle import Bundle
from edgemm.cli import main
from edgemm.errors import EdgemmError

torch = pytest.importorskip("torch")

VOCAB, TOKENS, DIM = 50, 8, 16


class ImageTower(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.proj = torch.nn.Linear(8, DIM)

    def forward(self, pixels):
        return self.proj(torch.relu(self.conv(pixels)).mean(dim=(2, 3)))


class TextTower(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(VOCAB, 24)
        self.proj = torch.nn.Linear(24, DIM)

    def forward(self, tokens):
        return self.proj(torch.tanh(self.embed(tokens).mean(dim=1)))


def _pixels(n, seed):
    return np.random.default_rng(seed).standard_normal((n, 3, 16, 16)).astype(np.float32)


def _tokens(n, seed):
    return np.random.default_rng(seed).integers(0, VOCAB, (n, TOKENS)).astype(np.int64)


@pytest.fixture(scope="module")
def two_graphs(tmp_path_factory):
    torch.manual_seed(0)
    models = {"image": ImageTower().eval(), "text": TextTower().eval()}
    tmp = tmp_path_factory.mktemp("multigraph")
    calib = tmp / "calib.npz"
    np.savez(calib, pixels=_pixels(128, 1), tokens=_tokens(128, 2))
    out = tmp / "bundle"
    edgemm.export(models, example_inputs={"image": {"pixels": _pixels(2, 3)}, "text": {"tokens": _tokens(2, 4)}},
                  output=out, int8=True, calibration=calib, targets=["onnxruntime", "openvino"], threads=2)
    return models, out


def test_two_graphs_one_bundle_with_fp32_and_int8_per_graph(two_graphs):
    _, out = two_graphs
    b = Bundle.open(out)
    assert b.manifest["format_version"] == 2
    assert b.graphs() == ["image", "text"]
    assert b.graph("text").spec.input("tokens").dtype == "int64"
    for g in ("image", "text"):
        have = {(a.backend, a.precision) for a in b.graph(g).artifacts}
        for backend in ("onnxruntime", "openvino"):
            assert {(backend, "fp32"), (backend, "int8")} <= have, (g, have)
        assert all(a.path.startswith(f"graphs/{g}/") for a in b.graph(g).artifacts)  # edgemm.layout: one tree per graph


def test_verify_reports_both_graphs_with_fp32_parity(two_graphs, capsys):
    _, out = two_graphs
    assert main(["verify", str(out)]) == 0
    parity = json.loads((out / "reports/parity.json").read_text())
    assert set(parity["graphs"]) == {"image", "text"}
    seen = set()
    for aid, entry in parity["artifacts"].items():
        seen.add(entry["graph"])
        if entry["precision"] == "fp32" and "outputs" in entry:
            assert min(o["cosine"] for o in entry["outputs"].values()) >= 0.9999, aid
    assert seen == {"image", "text"}


def test_load_each_graph_and_run(two_graphs):
    models, out = two_graphs
    feeds = {"image": {"pixels": _pixels(3, 9)}, "text": {"tokens": _tokens(3, 9)}}
    for g, model in models.items():
        for backend in ("onnxruntime", "openvino"):
            with edgemm.load(out, graph=g, backend=backend, precision="fp32") as rt:
                assert rt.graph == g and rt.inputs == Bundle.open(out).graph(g).spec.inputs
                got = next(iter(rt.run(feeds[g]).values()))
            with torch.no_grad():
                want = model(*(torch.from_numpy(v) for v in feeds[g].values())).numpy()
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    with edgemm.load(out) as both:
        assert both.graphs == ["image", "text"]
        assert next(iter(both.graph("text").run(feeds["text"]).values())).shape == (3, DIM)
        with pytest.raises(EdgemmError, match="rt.graph"):
            both.run(feeds["text"])
        with pytest.raises(EdgemmError, match="no graph 'txt'.*did you mean 'text'"):
            both.graph("txt")


def test_info_and_bench_show_rows_per_graph(two_graphs, capsys, tmp_path):
    _, out = two_graphs
    assert main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "\ngraph image\n" in text and "\ngraph text\n" in text  # a section per graph: its inputs and outputs
    report = tmp_path / "bench.json"
    assert main(["bench", str(out), "--backends", "onnxruntime", "--batch", "1", "--rounds", "1", "--seconds", "0.2",
                 "--json", str(report)]) == 0
    runs = json.loads(report.read_text())["runs"]
    assert {r["graph"] for r in runs} == {"image", "text"}


def test_multigraph_errors_are_one_line(tmp_path):
    with pytest.raises(EdgemmError, match="keyed by graph name"):
        edgemm.export({"image": ImageTower(), "text": TextTower()}, example_inputs={"pixels": _pixels(2, 0)}, output=tmp_path / "b")
    with pytest.raises(EdgemmError, match="graph name 'a/b' is not allowed"):
        edgemm.export({"a/b": ImageTower()}, example_inputs={"a/b": {"pixels": _pixels(2, 0)}}, output=tmp_path / "b")
    assert not (tmp_path / "b").exists()


def test_shared_input_names_need_graph_keys(tmp_path):
    calib = tmp_path / "calib.npz"
    np.savez(calib, pixels=_pixels(120, 1))
    models = {"a": ImageTower().eval(), "b": ImageTower().eval()}
    ex = {"a": {"pixels": _pixels(2, 0)}, "b": {"pixels": _pixels(2, 1)}}
    with pytest.raises(EdgemmError, match="key it per graph.*a/pixels"):
        edgemm.export(models, example_inputs=ex, output=tmp_path / "b", int8=True, calibration=calib, targets=["onnxruntime"])
    assert not (tmp_path / "b").exists()


@pytest.mark.slow
def test_recipe_with_graph_tables_exports_one_bundle_from_the_cli(tmp_path):
    """`edgemm export export/seed_dual_encoder.toml`: a [graphs.<name>] table per graph -> one bundle; the text
    graph's tokenizer shipped (strings work from the bundle alone), parity on the inputs' modality feeds."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "b"
    assert main(["-q", "export", str(root / "export" / "seed_dual_encoder.toml"), "-o", str(out),
                 "--target", "onnxruntime", "--threads", "2"]) == 0
    b = Bundle.open(out)
    assert b.graphs() == ["image", "text"] and b.manifest["model"]["source"] == "recipe seed_dual_encoder.toml"
    assert b.manifest["model"]["checkpoint"] == "edgemm:zoo/checkpoints/seed_dual_encoder.pt"
    text = b.manifest["graphs"]["text"]
    assert "valid feeds made by the inputs' modalities" in text["parity"]["source"]
    with np.load(out / text["parity"]["path"]) as f:
        ids = f["prompt"]
    assert ids.shape == (32, 8) and (ids[:, 0] > 1).all()  # tokenizer words, not 0/1
    with edgemm.load(out, graph="text", backend="onnxruntime", precision="fp32") as rt:
        feeds = rt.preprocess(prompt=["a photo of the digit seven", "a handwritten 7"])
        assert feeds["prompt"].shape == (2, 8) and (feeds["prompt"][:, :3] > 1).all()
        emb = rt.run(feeds)["text_embedding"]
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-4)
