"""A plain nn.Module (no family) whose forward returns a dict, a namedtuple, a Hugging Face ModelOutput or nested
structures: outputs named by their keys and fields (dotted when nested), None values left out, only some kept on
request, a non-tensor output refused in one line; the bundle exported from it runs in onnxruntime with those names."""
from __future__ import annotations

import collections

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from edgemm.configure import configure  # noqa: E402
from edgemm.errors import EdgemmError, SpecError  # noqa: E402
from edgemm.families.resolve import resolve_generic  # noqa: E402
from edgemm.pipeline import run_pipeline  # noqa: E402
from edgemm.torchutil import output_items, run_module  # noqa: E402

Pair = collections.namedtuple("Pair", "logits embedding")
EXAMPLE = {"audio": np.ones((1, 6), np.float32), "image": np.zeros((1, 4), np.float32)}  # not in forward() order


class Heads(nn.Module):
    def __init__(self, kind: str):
        super().__init__()
        torch.manual_seed(0)
        self.kind = kind
        self.img, self.aud = nn.Linear(4, 3), nn.Linear(6, 5)

    def forward(self, image, audio):
        a, b = self.img(image), self.aud(audio)
        if self.kind == "dict":
            return {"logits": a, "aux": None, "embedding": b, "extra": (a * 2, {"z": torch.tanh(b)})}
        if self.kind == "namedtuple":
            return Pair(a, b)
        if self.kind == "model_output":
            from transformers.modeling_outputs import SequenceClassifierOutput

            return SequenceClassifierOutput(logits=a, hidden_states=(b,))
        if self.kind == "string":
            return {"logits": a, "label": "cat"}
        return a, b


def test_output_items_follow_torch_pytree_order():
    out = {"b": torch.ones(1), "a": (torch.zeros(1), None, [torch.ones(2)]), "c": None}
    items, dropped = output_items(out)
    assert [k for k, _ in items] == ["b", "a.0", "a.2.0"] and dropped == ["a.1", "c"]
    # the order torch.export / the ONNX exporters flatten outputs in (None is no graph output)
    leaves = [x for x in torch.utils._pytree.tree_leaves(out) if x is not None]
    assert len(leaves) == len(items) and all(x is y for x, (_, y) in zip(leaves, items))


@pytest.mark.parametrize("kind, names", [
    ("dict", ["logits", "embedding", "extra.0", "extra.1.z"]),
    ("namedtuple", ["logits", "embedding"]),
    ("model_output", ["logits", "hidden_states.0"]),
])
def test_outputs_named_from_the_structure(kind, names):
    if kind == "model_output":
        pytest.importorskip("transformers")
    resolved = resolve_generic(Heads(kind), EXAMPLE)
    g = resolved.graphs["main"]
    assert g.spec.output_names == names and g.spec.input_names == ["image", "audio"]
    assert [t.shape[0] for t in g.spec.outputs] == ["batch"] * len(names)
    arrays = run_module(g.model, EXAMPLE, g.spec.input_names)
    assert [a.shape[0] for a in arrays] == [1] * len(names)


def test_plain_tensors_keep_the_generic_path():
    assert resolve_generic(Heads("tuple"), EXAMPLE) is None  # output_0, output_1 as before
    assert len(run_module(Heads("dict"), EXAMPLE, ["image", "audio"])) == 4  # no crash on a dict (issue 24)


def test_keep_only_some_and_unknown_names():
    resolved = resolve_generic(Heads("dict"), EXAMPLE, keep=["extra.1.z", "logits"])
    assert resolved.graphs["main"].spec.output_names == ["extra.1.z", "logits"]
    with pytest.raises(SpecError) as e:
        resolve_generic(Heads("dict"), EXAMPLE, keep=["embeding"])
    assert str(e.value) == ("Heads.forward has no output 'embeding' (did you mean 'embedding'?); its outputs: logits, "
                            "embedding, extra.0, extra.1.z")


def test_non_tensor_output_is_one_line():
    with pytest.raises(EdgemmError) as e:
        resolve_generic(Heads("string"), EXAMPLE)
    assert str(e.value) == ("Heads.forward returns a str as output 'label'; an exported graph returns tensors only: "
                            "return it as a tensor (torch.tensor(...)) or leave it out of forward()'s result")


def test_bundle_outputs_carry_the_names(tmp_path):
    import edgemm

    model = Heads("dict").eval()
    resolved = resolve_generic(model, EXAMPLE, keep=["embedding", "logits", "extra.1.z"])
    _, cfg = configure(model, EXAMPLE, output=tmp_path / "b", targets="onnxruntime", resolved=resolved)
    bundle = run_pipeline(resolved, cfg)
    assert bundle.spec.output_names == ["embedding", "logits", "extra.1.z"]
    feeds = {"image": np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32),
             "audio": np.random.default_rng(1).standard_normal((3, 6)).astype(np.float32)}
    with torch.no_grad():
        want = model(torch.from_numpy(feeds["image"]), torch.from_numpy(feeds["audio"]))
    with edgemm.load(tmp_path / "b", backend="onnxruntime") as rt:
        got = rt.run(feeds)
    assert list(got) == ["embedding", "logits", "extra.1.z"]
    np.testing.assert_allclose(got["embedding"], want["embedding"].numpy(), atol=1e-5)
    np.testing.assert_allclose(got["extra.1.z"], want["extra"][1]["z"].numpy(), atol=1e-5)
