"""The launcher's environment, and the default path: one process never starts (or imports) anything distributed."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from edgemm.distributed.env import backend_choice, launch_from_env, timeout_s
from edgemm.errors import EdgemmError

from dist_launch import launch_env

BASE = {"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}


def test_no_launcher_or_one_process_is_the_default_path():
    assert launch_from_env({}) is None
    assert launch_from_env({**BASE, "WORLD_SIZE": "1", "RANK": "0"}) is None
    la = launch_from_env({**BASE, "TORCHELASTIC_USE_AGENT_STORE": "True", "LOCAL_WORLD_SIZE": "2"})
    assert (la.rank, la.world_size, la.local_rank, la.agent_store, la.local_world_size) == (1, 2, 1, True, 2)


@pytest.mark.parametrize("change, says", [
    ({"RANK": "2"}, "RANK=2 is outside 0..1"),
    ({"RANK": "one"}, "RANK='one' is not a whole number"),
    ({"RANK": ""}, "RANK is not set"),
    ({"MASTER_ADDR": ""}, "MASTER_ADDR is not set"),
    ({"MASTER_PORT": "70000"}, "MASTER_PORT=70000 is outside 1..65535"),
    ({"WORLD_SIZE": "0"}, "WORLD_SIZE=0 is outside >= 1"),
])
def test_a_broken_launch_environment_is_one_line_with_the_fix(change, says):
    with pytest.raises(EdgemmError) as err:
        launch_from_env({**BASE, **change})
    msg = str(err.value)
    assert says in msg and "torchrun --nproc-per-node" in msg and "\n" not in msg


def test_timeout_and_backend_knobs():
    assert timeout_s({}) == 1800.0 and timeout_s({"EDGEMM_DIST_TIMEOUT": "5"}) == 5.0
    with pytest.raises(EdgemmError, match="EDGEMM_DIST_TIMEOUT='-1' is not a positive number"):
        timeout_s({"EDGEMM_DIST_TIMEOUT": "-1"})
    assert backend_choice(False, {}) == "gloo" and backend_choice(True, {}) == "nccl"
    assert backend_choice(True, {"EDGEMM_DIST_BACKEND": "gloo"}) == "gloo"
    with pytest.raises(EdgemmError, match="needs CUDA"):
        backend_choice(False, {"EDGEMM_DIST_BACKEND": "nccl"})
    with pytest.raises(EdgemmError, match="did you mean 'gloo'"):
        backend_choice(False, {"EDGEMM_DIST_BACKEND": "glo"})


def test_the_default_path_imports_no_torch():
    code = ("import sys, edgemm.distributed, edgemm.pipeline, edgemm.cli; "
            "print(edgemm.distributed.current() is None, 'torch.distributed' in sys.modules, 'ray' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], env=launch_env(), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "False", "False"]


def test_one_process_prune_starts_no_group_and_records_world_size_1(tmp_path, tiny_recipe):
    import torch

    import edgemm
    import edgemm.distributed as dist

    recipe = tiny_recipe()
    b = edgemm.export(recipe, output=tmp_path / "B", prune=0.5, prune_options={"epochs": 1}, verify=False)
    assert dist.current() is None and not torch.distributed.is_initialized()
    prn = json.loads((b.root / "reports" / "pruning.json").read_text())
    assert prn["world_size"] == 1 and prn["rank"] == 0 and "distributed" not in prn
