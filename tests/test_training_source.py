"""The fine-tuning split (recipe ``[data] training``): a sample file, or a ``[data.training]`` generator table
that renders samples with the recipe's own code (edgemm.data.generated); avnet's renders 9,600 pairs from
the shipped raw training material (edgemm.zoo.avmnist.training_pairs)."""
from __future__ import annotations

import numpy as np
import pytest

from edgemm.data.generated import describe, read_training, resolve_training
from edgemm.errors import EdgemmError, RecipeError, SpecError
from edgemm.recipe import load_recipe
from edgemm.stages.prune import default_epochs as prune_epochs
from edgemm.stages.qat import default_epochs as qat_epochs
from edgemm.zoo import avmnist
from edgemm.zoo.avnet import iospec

from models.paths import RECIPE, ROOT

MATERIAL = ROOT / "calibration_data" / "avmnist" / "train-material.npz"


def test_shipped_recipe_renders_its_training_split_from_the_material():
    r = load_recipe(RECIPE)
    src = resolve_training(r.data.training, r.resolve)
    assert src["generator"] == "edgemm.zoo.avmnist:training_pairs" and src["renders"] == 4
    assert src["path"] == str(MATERIAL.resolve()) and MATERIAL.is_file()
    assert describe(src).startswith("edgemm.zoo.avmnist:training_pairs(path=")


def test_material_holds_training_takes_only():
    with np.load(MATERIAL, allow_pickle=False) as f:
        takes, files, offsets = f["fsdd_take"], f["fsdd_file"], f["fsdd_offsets"]
        assert len(takes) == 2400 and takes.max() < 40 and set(takes) == set(avmnist.TRAIN_TAKES)
        assert all(int(n.split("_")[2][:-4]) < 40 for n in files)  # 0_george_12.wav
        assert len(f["mnist_label"]) == 8000 and f["mnist_image"].shape == (8000, 28, 28)
        assert offsets[-1] == len(f["fsdd_audio"]) and (np.diff(offsets) > 0).all()


def test_training_pairs_render_deterministically_and_differ_per_render():
    a = avmnist.training_pairs(MATERIAL, renders=1, seed=7)
    assert len(a["digit"]) == 2400 and a["image"].shape == (2400, 64, 64, 3) and a["audio"].shape == (2400, 8000)
    assert int(a["audio.sample_rate"]) == avmnist.FSDD_RATE and a["mnist_index"].max() < 8000
    b = avmnist.training_pairs(MATERIAL, renders=1, seed=7)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    c = avmnist.training_pairs(MATERIAL, renders=1, seed=8)
    assert np.array_equal(a["digit"], c["digit"]) and not np.array_equal(a["image"], c["image"])
    with pytest.raises(ValueError, match="renders must be a whole number"):
        avmnist.training_pairs(MATERIAL, renders=0)


def test_generator_samples_are_model_feeds_with_labels(tmp_path):
    src = {"generator": "edgemm.zoo.avmnist:training_pairs", "path": str(MATERIAL), "renders": 1, "seed": 3}
    s = read_training(src, iospec())
    assert len(s) == 2400 and s.feeds["image"].shape == (2400, 3, 64, 64) and s.feeds["audio"].shape == (2400, 1, 64, 98)
    assert set(s.labels) == {"digit", "speaker"} and s.source.startswith("edgemm.zoo.avmnist:training_pairs(")


def as_list() -> list:
    """A generator that returns the wrong thing (for the error test)."""
    return [1, 2]


def without_audio() -> dict:
    """A generator whose samples lack an input (for the error test)."""
    return {"image": np.zeros((4, 64, 64, 3), np.uint8), "digit": np.zeros(4, np.int64)}


def _recipe(tmp_path, table: str, data_line: str = ""):
    """The shipped recipe with its [data.training] table replaced by ``table`` (and ``data_line`` added to [data])."""
    text = RECIPE.read_text().replace('"../', f'"{ROOT}/')
    start = text.index("[data.training]")
    end = text.index("\n[", start + 1)
    p = tmp_path / "r.toml"
    p.write_text(text[:start].replace("[data]\n", f"[data]\n{data_line}\n") + table + text[end:])
    return p


def test_table_without_generator_is_refused(tmp_path):
    with pytest.raises(RecipeError, match=r'\[data.training\] needs generator = "package.module:callable"'):
        load_recipe(_recipe(tmp_path, '[data.training]\npath = "x.npz"\n'))


@pytest.mark.parametrize("table,error,needle", [
    ('[data.training]\ngenerator = "edgemm.zoo.avmnist:training_pair"\n', RecipeError, "did you mean 'training_pairs'"),
    ('[data.training]\ngenerator = "no_such_pkg.x:f"\n', RecipeError, "cannot import 'no_such_pkg.x'"),
    ('[data.training]\ngenerator = "edgemm.zoo.avmnist:training_pairs"\npath = "missing.npz"\n', SpecError, "missing.npz not found"),
    ('[data.training]\ngenerator = "edgemm.zoo.avmnist:training_pairs"\npath = "../calibration_data/avmnist/train-material.npz"\nrender = 2\n',
     RecipeError, "the training generator edgemm.zoo.avmnist:training_pairs cannot be called with"),
    ('[data.training]\ngenerator = "edgemm.zoo.avmnist:read_mnist"\npath = "../calibration_data/avmnist/train-material.npz"\n',
     RecipeError, "the training generator edgemm.zoo.avmnist:read_mnist cannot be called with"),
    ('[data.training]\ngenerator = "test_training_source:as_list"\n', SpecError, "returned a list"),
    ('[data.training]\ngenerator = "test_training_source:without_audio"\n', SpecError, "lacks input(s) audio"),
])
def test_bad_generator_is_one_clear_error(tmp_path, table, error, needle):
    r = load_recipe(_recipe(tmp_path, table.replace('"../', f'"{ROOT}/')))
    with pytest.raises(error) as info:
        read_training(resolve_training(r.data.training, r.resolve), iospec())
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_training_must_be_a_path_or_a_table(tmp_path):
    with pytest.raises(RecipeError, match="training = 3 is not allowed: expected a string or a table or none"):
        load_recipe(_recipe(tmp_path, "", "training = 3"))


def test_default_fine_tune_lengths_follow_the_split_size():
    assert [prune_epochs(n) for n in (300, 1200, 2400, 4800, 9600, 100_000)] == [40, 40, 40, 30, 15, 1]
    assert [qat_epochs(n) for n in (300, 1200, 2400, 9600, 20_000)] == [4, 4, 4, 1, 1]


CALLS = []


def counted() -> dict:
    """A generator that records each call (TrainingSplit renders once per export)."""
    CALLS.append(1)
    return {"image": np.zeros((4, 64, 64, 3), np.uint8), "audio": np.zeros((4, 8000), np.int16), "audio.sample_rate": 8000,
            "digit": np.zeros(4, np.int64)}


def test_training_split_is_read_once_for_pruning_and_qat():
    from edgemm.data.generated import TrainingSplit

    CALLS.clear()
    split = TrainingSplit({"generator": "test_training_source:counted"}, iospec())
    first, second = split.read(), split.read()
    assert first is second and len(first) == 4 and len(CALLS) == 1
    assert TrainingSplit(None, iospec()).read() is None
