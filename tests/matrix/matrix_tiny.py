"""A tiny plan for the matrix tests: the two-input test model (tests/models/tiny.py) with labelled data it
labels itself, exported for onnxruntime and openvino in fp32 and int8, timed briefly."""
from __future__ import annotations

from pathlib import Path

import numpy as np

RECIPE = """[model]
name = "tiny"
factory = "models.tiny:TinyAV"

[[inputs]]
name = "image"
modality = "tensor"
dtype = "float32"
shape = ["batch", 3, 8, 8]

[[inputs]]
name = "audio"
modality = "tensor"
dtype = "float32"
shape = ["batch", 1, 8, 10]

[[outputs]]
name = "cls"
dtype = "float32"
shape = ["batch", 4]
labels = ["a", "b", "c", "d"]

[[outputs]]
name = "spk"
dtype = "float32"
shape = ["batch", 3]
labels = ["x", "y", "z"]

[data]
calibration = "data.npz"
evaluation = "data.npz"

[export]
targets = ["onnxruntime"]

[verify]
parity_samples = 8
"""

PLAN = """[matrix]
output = "out"
targets = {targets}
precisions = {precisions}
device_kinds = {kinds}
wait_node_s = {wait}

[bench]
batch = 1
rounds = 1
seconds = 0.2
warmup = 2
threads = 1

[[models]]
name = "tiny"
model = "tiny.toml"
options = {{quantize = {{speed_guard = false, search_minutes = 0.05}}}}
{extra}"""


def write_plan(folder: Path, targets=("onnxruntime", "openvino"), precisions=("fp32", "int8"), kinds=("any",),
               extra: str = "", wait: float = 60.0) -> Path:
    """tiny.toml, data.npz and plan.toml in ``folder``; returns the plan's path."""
    import torch

    from models.tiny import TinyAV, tiny_feeds

    feeds = tiny_feeds(128, seed=3)
    with torch.no_grad():
        cls, spk = TinyAV()(torch.from_numpy(feeds["image"]), torch.from_numpy(feeds["audio"]))
    np.savez(folder / "data.npz", **feeds, cls=cls.argmax(-1).numpy(), spk=spk.argmax(-1).numpy())
    (folder / "tiny.toml").write_text(RECIPE)
    q = lambda xs: "[" + ", ".join(f'"{x}"' for x in xs) + "]"  # noqa: E731
    plan = folder / "plan.toml"
    plan.write_text(PLAN.format(targets=q(targets), precisions=q(precisions), kinds=q(kinds), extra=extra, wait=wait))
    return plan
