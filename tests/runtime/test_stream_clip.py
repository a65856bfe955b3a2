"""Stream over a video-clip model: the ``video`` modality's adapter buffers the last T frames (each pre-processed
once) and the model runs on the clip at every frame; the first T-1 results repeat the oldest frame and are
flagged ``clip_padded``. Each result equals Runtime.preprocess + run on the same T frames."""
from __future__ import annotations

import numpy as np
import pytest

import edgemm
from edgemm.iospec import IOSpec
from edgemm.runtime.stream import Stream

torch = pytest.importorskip("torch")
T, SIZE = 3, 16


class ClipNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.head = torch.nn.Linear(8 * T, 5)

    def forward(self, clip):
        b = clip.shape[0]
        x = torch.relu(self.conv(clip.reshape(b * T, 3, SIZE, SIZE))).mean(dim=(2, 3))
        return self.head(x.reshape(b, T * 8))


def test_clip_stream_matches_preprocess_and_run(tmp_path, no_stream_threads):
    torch.manual_seed(0)
    spec = IOSpec.from_manifest({
        "inputs": [{"name": "clip", "modality": "video", "dtype": "float32", "shape": ["batch", T, 3, SIZE, SIZE],
                    "preprocessing": {"frames": T, "size": [SIZE, SIZE], "resize": "bicubic", "fit": "center_crop"}}],
        "outputs": [{"name": "action", "dtype": "float32", "shape": ["batch", 5], "labels": list("abcde")}]})
    examples = spec.valid_feeds(batch=2, seed=0)
    edgemm.export(ClipNet().eval(), example_inputs=examples, spec=spec, output=tmp_path / "b", targets=["onnxruntime"],
                  threads=2, verify=False)
    rt = edgemm.load(tmp_path / "b", backend="onnxruntime")
    with Stream(rt, video="synthetic:video?fps=10&frames=6&size=40x30", keep_frames=True) as s:
        results = list(s)
    assert len(results) == 6
    frames = [r.frame.rgb() for r in results]
    for k, r in enumerate(results):
        assert ("clip_padded" in r.flags) == (k < T - 1)
        clip = np.stack([frames[max(0, j)] for j in range(k - T + 1, k + 1)])
        want = rt.run(rt.preprocess(clip=clip))["action"]
        np.testing.assert_allclose(r.raw["action"], want, rtol=1e-5, atol=1e-5)
        assert r.outputs["action"][0] in "abcde"
    rt.close()
