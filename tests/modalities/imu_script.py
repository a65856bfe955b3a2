"""Run by test_modality_plugin in a subprocess whose PYTHONPATH holds the pip-installed edgemm-imu plugin:
export a small IMU model (defined here), verify it, preprocess and stream a CSV through the plugin's imu-csv: URI."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

import edgemm
from edgemm.iospec import IOSpec, TensorSpec
from edgemm.modalities.registry import all_modalities
from edgemm.runtime.stream import Stream

RATE, WINDOW = 200, 1.0
T = int(RATE * WINDOW)


class ImuNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv1d(6, 16, 9, stride=2)
        self.conv2 = torch.nn.Conv1d(16, 16, 5, stride=2)
        self.head = torch.nn.Linear(16, 4)

    def forward(self, motion):
        x = torch.relu(self.conv2(torch.relu(self.conv(motion))))
        return self.head(x.mean(-1))


def main(out: Path, csv: Path) -> None:
    mod = all_modalities()["imu"]
    assert type(mod).__module__.startswith("edgemm_imu"), type(mod).__module__
    torch.manual_seed(0)
    pre = {"rate": RATE, "window_s": WINDOW, "hop_s": 0.25}
    spec = IOSpec.from_manifest({
        "inputs": [{"name": "motion", "modality": "imu", "dtype": "float32", "shape": ["batch", 6, T], "preprocessing": pre}],
        "outputs": [{"name": "activity", "dtype": "float32", "shape": ["batch", 4], "labels": ["still", "walk", "run", "shake"]}]})
    examples = spec.valid_feeds(batch=4, seed=0)  # the plugin's generator: gravity, steps, rotation
    assert examples["motion"].shape == (4, 6, T) and abs(float(examples["motion"][:, 2].mean()) - 1.0) < 0.5  # ~1 g on z
    b = edgemm.export(ImuNet().eval(), example_inputs=examples, spec=spec, output=out, targets=["onnxruntime"], threads=2)
    manifest = json.loads((out / "manifest.json").read_text())
    entry = manifest["graphs"]["main"]["inputs"][0] if "graphs" in manifest else manifest["inputs"][0]
    assert entry["modality"] == "imu" and entry["preprocessing"]["rate"] == RATE, entry
    rt = edgemm.load(out, backend="onnxruntime")
    raw = np.loadtxt(csv, delimiter=",", skiprows=1, dtype=np.float64)
    samples = raw[:, 1:].astype(np.float32)
    # rt.preprocess needs the samples' rate (or the spec's input_rate): one line
    try:
        rt.preprocess(motion=samples[:T])
        raise AssertionError("no error without a sample rate")
    except edgemm.EdgemmError as exc:
        assert "needs the rate" in str(exc) and "\n" not in str(exc)
    results = list(Stream(rt, source=f"imu-csv:{csv}"))
    hop = int(0.25 * RATE)
    expect = 1 + (len(samples) - T) // hop
    assert len(results) == expect, (len(results), expect)
    for r in results:
        end = int(round(r.t_capture * RATE))
        want = rt.run(rt.preprocess(motion=(samples[end - T:end], RATE)))["activity"]
        np.testing.assert_allclose(r.raw["activity"], want, rtol=1e-5, atol=1e-5)
        assert r.outputs["activity"][0] in ("still", "walk", "run", "shake")
    # the same CSV at 400 Hz time stamps is resampled to the model's 200 Hz by the source
    print(json.dumps({"results": len(results), "labels": sorted({r.outputs["activity"][0] for r in results}),
                      "parity": b.report("parity") is not None}))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
