"""IOSpec axis ranges (min/opt/max): set from the API, a recipe's [axes] or --axis; recorded per graph in the
manifest; used by the export, the runtime's feed check and bench."""
from __future__ import annotations

import json

import numpy as np
import pytest

import edgemm
from edgemm.cli import main
from edgemm.errors import EdgemmError, SpecError
from edgemm.iospec import AxisRange, IOSpec, TensorSpec
from edgemm.recipe import load_recipe

from models.paths import RECIPE
from models.tiny import TinyAV, tiny_feeds, tiny_spec


@pytest.fixture(scope="module")
def ranged(tmp_path_factory):
    out = tmp_path_factory.mktemp("axes") / "b"
    edgemm.export(TinyAV(), spec=tiny_spec(), output=out, targets=["onnxruntime"], axes={"batch": (1, 2, 8)}, verify=False)
    return out


def test_ranges_are_recorded_and_checked_at_run_time(ranged):
    m = json.loads((ranged / "manifest.json").read_text())
    assert m["graphs"]["main"]["axes"] == {"batch": {"min": 1, "opt": 2, "max": 8}}
    with edgemm.load(ranged, backend="onnxruntime") as rt:
        assert rt.spec.shape_range("image") == ((1, 3, 8, 8), (2, 3, 8, 8), (8, 3, 8, 8))
        assert len(rt.run(tiny_feeds(8))) == 2
        for n, want in ((9, "is 9; this model takes 1..8"), (0, "an empty batch")):
            with pytest.raises(SpecError, match=want) as exc:
                rt.run(tiny_feeds(n) if n else {k: v[:0] for k, v in tiny_feeds(1).items()})
            assert "\n" not in str(exc.value)


def test_bench_refuses_batches_outside_the_range(ranged, capsys):
    assert main(["bench", str(ranged), "--batch", "16", "--backends", "onnxruntime"]) == 2
    assert "outside axis 'batch'" in capsys.readouterr().err


def test_axis_range_values():
    assert AxisRange.from_value({"max": 16}, "x") == AxisRange(1, 1, 16)
    assert AxisRange.from_value(8, "x") == AxisRange(8, 8, 8)
    for bad in ({"min": 4, "opt": 2}, [0, 1, 2], {"maxx": 3}, "big"):
        with pytest.raises(SpecError):
            AxisRange.from_value(bad, "x")
    with pytest.raises(SpecError, match="name no dynamic axis"):
        IOSpec((TensorSpec("x", shape=("batch", 2)),), axes={"time": (1, 1, 4)})


def test_recipe_axes_table_and_unknown_names(tmp_path):
    text = RECIPE.read_text().replace("[data]", "[axes]\nbatch = { min = 1, opt = 4, max = 32 }\n\n[data]", 1)
    p = tmp_path / "r.toml"
    p.write_text(text.replace('"../', f'"{RECIPE.parent.parent}/'))
    assert load_recipe(p).spec.axis_range("batch") == AxisRange(1, 4, 32)
    with pytest.raises(EdgemmError, match="'batchh' is not a dynamic axis.*did you mean 'batch'"):
        edgemm.export(TinyAV(), spec=tiny_spec(), output=tmp_path / "b", axes={"batchh": 4}, verify=False)
    with pytest.raises(SystemExit) as exc:  # a usage error: argparse's exit 2, one line
        main(["export", str(RECIPE), "--axis", "batch=1:x:4", "-o", str(tmp_path / "c")])
    assert exc.value.code == 2
    assert not (tmp_path / "b").exists() and not (tmp_path / "c").exists()
