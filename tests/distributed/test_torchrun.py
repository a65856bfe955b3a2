"""``torchrun --nproc-per-node 2 -m edgemm export ... --prune R [--qat]`` on the tiny model, gloo on this CPU:
rank 0 alone writes a bundle that verifies, reports/pruning.json records the world, and an error, a SIGTERM
or a SIGKILL on any rank ends every rank in one edgemm line with nothing left beside the output."""
from __future__ import annotations

import json
import re

import pytest

from dist_launch import edgemm_lines, leftovers, torchrun


def test_two_ranks_prune_and_qat_write_one_verified_bundle(tmp_path, tiny_recipe):
    recipe = tiny_recipe()
    res = torchrun(tmp_path, "export", str(recipe), "--prune", "0.5", "--finetune-epochs", "1", "--qat", "--qat-epochs", "1",
                   "--max-drop", "none", "-o", "B")
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.count("bundle: ") == 1, res.stdout  # rank 0 speaks for the run
    assert not edgemm_lines(res.stderr), res.stderr[-2000:]
    prn = json.loads((tmp_path / "B" / "reports" / "pruning.json").read_text())
    assert prn["world_size"] == 2 and prn["rank"] == 0
    d = prn["distributed"]
    assert d["backend"] == "gloo" and d["samples"] == 96 and d["samples_per_rank"] == 48 and d["batch_per_rank"] == 16
    assert prn["finetune"]["epochs"] == 1 and prn["accuracy"]["after_finetune"]
    from edgemm.bundle import Bundle
    from edgemm.stages.verify import verify

    b = Bundle.open(tmp_path / "B")
    assert any("qat" in a.path for a in b.artifacts), [a.path for a in b.artifacts]  # rank 0 exported the QAT model
    verify(b, write=False, latency=False)  # raises on a breach
    assert leftovers(tmp_path, "B") == ["B"]


@pytest.mark.parametrize("rank", ["1", "0"])
def test_a_rank_killed_in_the_fine_tune_ends_the_run_in_one_line(tmp_path, tiny_recipe, rank):
    recipe = tiny_recipe(factory="dist_tiny:dying")
    res = torchrun(tmp_path, "-q", "export", str(recipe), "--prune", "0.5", "--finetune-epochs", "3", "-o", "B",
                   EDGEMM_TEST_DIE_RANK=rank)  # SIGKILL at its third training step: no clean-up of its own
    assert res.returncode != 0
    lines = edgemm_lines(res.stderr)
    assert len(lines) == 1, res.stderr[-3000:]
    assert lines[0].startswith("edgemm: error: ") and f"rank {rank} of 2" in lines[0] and "killed" in lines[0], lines[0]
    assert lines[0].count(" of 2") == 1, lines[0]  # the dead rank is named, not the rank that said so
    assert not re.search(r'File ".*/edgemm/', res.stderr), res.stderr[-3000:]  # torchrun's summary only: no edgemm traceback
    assert res.stdout == ""
    assert leftovers(tmp_path, "B") == []  # rank 0's staging folder is gone, also when rank 0 was the one killed


def test_sigterm_on_one_rank_is_one_interrupted_line(tmp_path, tiny_recipe):
    recipe = tiny_recipe(factory="dist_tiny:dying")
    res = torchrun(tmp_path, "-q", "export", str(recipe), "--prune", "0.5", "--finetune-epochs", "3", "-o", "B",
                   EDGEMM_TEST_DIE_RANK="1", EDGEMM_TEST_DIE_SIGNAL="SIGTERM")
    lines = edgemm_lines(res.stderr)
    assert len(lines) == 1 and lines[0].startswith("edgemm: interrupted (rank 1 of 2 got SIGTERM"), res.stderr[-3000:]
    codes = set(re.findall(r"exitcode\s*:\s*(-?\d+)", res.stderr))
    assert codes == {"130"}, res.stderr[-3000:]  # every rank ends alike
    assert leftovers(tmp_path, "B") == []


def test_an_error_on_one_rank_is_one_line_and_every_rank_exits_2(tmp_path, tiny_recipe):
    recipe = tiny_recipe(training='generator = "dist_tiny:failing_training"')
    res = torchrun(tmp_path, "-q", "export", str(recipe), "--prune", "0.5", "--finetune-epochs", "1", "-o", "B")
    lines = edgemm_lines(res.stderr)
    assert len(lines) == 1, res.stderr[-3000:]
    assert "dist_tiny:failing_training" in lines[0] and "no training data on rank 1" in lines[0] and "(rank 1 of 2)" in lines[0]
    codes = set(re.findall(r"exitcode\s*:\s*(-?\d+)", res.stderr))
    assert codes == {"2"}, res.stderr[-3000:]
    assert leftovers(tmp_path, "B") == []
