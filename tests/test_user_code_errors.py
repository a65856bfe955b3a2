"""Errors are attributed: an exception raised in the user's own code (a recipe's model factory, a training
generator, a bundle factory the user trusts) is reported as the user's, naming the callable, with its traceback
under ``-v``; non-finite training or calibration data is refused in one line before any training or calibration.

The CLI cases run ``python -m edgemm`` in real subprocesses on a tiny recipe whose factory and generators live in
a real module of the test's own folder."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from edgemm.data.calibration import calibration_source
from edgemm.data.generated import read_training
from edgemm.errors import EdgemmError, RecipeError, SpecError, UserCodeError
from edgemm.usercode import call_user_code, import_callable

from models.paths import ROOT
from models.tiny import tiny_feeds, tiny_spec

USER_MODULE = '''
import sys

import numpy as np


def build(checkpoint=None):
    sys.path.insert(0, {tests!r})
    from models.tiny import TinyAV

    return TinyAV(0)


def broken_factory(checkpoint=None):
    raise RuntimeError("no weights here")


def _arrays(n=64, seed=0):
    rng = np.random.default_rng(seed)
    return {{"image": rng.standard_normal((n, 3, 8, 8)).astype(np.float32),
             "audio": rng.standard_normal((n, 1, 8, 10)).astype(np.float32),
             "cls": rng.integers(0, 4, n), "spk": rng.integers(0, 3, n)}}


def good_pairs(n=64):
    return _arrays(n)


def raising_pairs(n=64):
    return helper_that_fails(n)


def helper_that_fails(n):
    raise ValueError(f"cannot render {{n}} pairs: material missing")


def exiting_pairs():
    sys.exit("giving up")


def nan_pairs(n=64):
    a = _arrays(n)
    a["audio"][5, 0, 2, 3] = np.nan
    a["audio"][9, 0, 0, 0] = np.inf
    return a


def nan_label_pairs(n=64):
    a = _arrays(n)
    a["cls"] = a["cls"].astype(np.float64)
    a["cls"][7] = np.nan
    return a
'''

RECIPE = '''
[model]
name = "tiny"
factory = "{factory}"

[[inputs]]
name = "image"
dtype = "float32"
shape = ["batch", 3, 8, 8]

[[inputs]]
name = "audio"
dtype = "float32"
shape = ["batch", 1, 8, 10]

[[outputs]]
name = "cls"
shape = ["batch", 4]
labels = ["a", "b", "c", "d"]

[[outputs]]
name = "spk"
shape = ["batch", 3]
labels = ["x", "y", "z"]

[data]
{data}

[export]
targets = ["onnxruntime"]
'''


@pytest.fixture
def user(tmp_path, monkeypatch):
    """A folder holding the user's module ``userpkg_<n>`` (unique per test: modules are cached per process)."""
    name = f"userpkg_{abs(hash(str(tmp_path))) % 10**8}"
    (tmp_path / f"{name}.py").write_text(USER_MODULE.format(tests=str(ROOT / "tests")))
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path, name


def write_recipe(folder: Path, factory: str, data: str = "") -> Path:
    p = folder / "recipe.toml"
    p.write_text(RECIPE.format(factory=factory, data=data))
    return p


def save_samples(path: Path, n: int = 64, nan_at: tuple | None = None) -> Path:
    feeds = tiny_feeds(n)
    if nan_at is not None:
        feeds["image"][nan_at] = np.nan
    rng = np.random.default_rng(1)
    np.savez(path, **feeds, cls=rng.integers(0, 4, n), spk=rng.integers(0, 3, n))
    return path


def cli(folder: Path, *args, timeout=600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(folder), str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "edgemm", *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          cwd=folder, env=env)


def one_error_line(r: subprocess.CompletedProcess) -> str:
    lines = r.stderr.splitlines()
    assert r.returncode == 2, (r.returncode, r.stderr[-3000:])
    assert len(lines) == 1 and lines[0].startswith("edgemm: error: "), r.stderr[-3000:]
    return lines[0]


# --------------------------------------------------------------------------- the callables themselves


def test_a_raising_generator_is_the_users_error_naming_it(user):
    _, mod = user
    with pytest.raises(UserCodeError) as info:
        read_training({"generator": f"{mod}:raising_pairs", "n": 8}, tiny_spec())
    assert str(info.value) == (f"the training generator {mod}:raising_pairs raised ValueError: cannot render 8 pairs: "
                               "material missing; fix it (traceback with -v)")
    assert isinstance(info.value.__cause__, ValueError)  # the CLI prints its traceback under -v


def test_sys_exit_in_user_code_is_caught_and_ctrl_c_is_not(user):
    _, mod = user
    with pytest.raises(UserCodeError, match=rf"the training generator {mod}:exiting_pairs called sys.exit\('giving up'\)"):
        read_training({"generator": f"{mod}:exiting_pairs"}, tiny_spec())

    def interrupted():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        call_user_code(interrupted, "m:interrupted", "model factory")


def test_an_edgemm_error_inside_user_code_passes_as_it_is():
    def refuses():
        raise SpecError("that input is wrong; fix it")

    with pytest.raises(SpecError, match="^that input is wrong; fix it$"):
        call_user_code(refuses, "m:refuses", "model factory")


def test_options_the_callable_does_not_take_are_a_recipe_error(user):
    _, mod = user
    with pytest.raises(RecipeError, match=rf"the training generator {mod}:good_pairs cannot be called with n, seed .*"
                                          r"unexpected keyword argument 'seed'.*it takes: n"):
        read_training({"generator": f"{mod}:good_pairs", "n": 8, "seed": 1}, tiny_spec())


def test_import_callable_refuses_what_is_not_callable(user):
    _, mod = user
    with pytest.raises(RecipeError, match=rf"the model factory {mod}:np is a module, not a function or class"):
        import_callable(f"{mod}:np")


def test_a_trusted_bundle_factory_that_raises_is_the_users(user):
    from edgemm.trust import resolve_factory

    _, mod = user
    fn = resolve_factory(f"{mod}:broken_factory", trust_code=True)
    with pytest.raises(UserCodeError, match=rf"^the model factory {mod}:broken_factory raised RuntimeError: no weights here"):
        fn()


# --------------------------------------------------------------------------- non-finite data, before any training


def test_nan_from_a_generator_is_refused_naming_it_and_the_input(user):
    _, mod = user
    with pytest.raises(SpecError) as info:
        read_training({"generator": f"{mod}:nan_pairs"}, tiny_spec())
    assert str(info.value) == (f"the output of the training generator {mod}:nan_pairs: array 'audio' has 2 NaN/inf value(s) "
                               "(first in sample 5); fix the generator (training must not see them)")


def test_nan_labels_from_a_generator_are_refused(user):
    _, mod = user
    with pytest.raises(SpecError, match=r"array 'cls' has 1 NaN/inf value\(s\) \(first in sample 7\)"):
        read_training({"generator": f"{mod}:nan_label_pairs"}, tiny_spec())


def test_nan_in_a_training_file_is_refused_naming_the_file(tmp_path):
    folder = tmp_path / "train"
    folder.mkdir()
    save_samples(folder / "a.npz")
    save_samples(folder / "b.npz", nan_at=(3, 1, 2, 2))
    with pytest.raises(SpecError) as info:
        read_training(str(folder), tiny_spec())
    assert str(info.value).startswith(f"training data {folder} (file b.npz): input 'image' has 1 NaN/inf value(s) "
                                      "(first in sample 3); clean the training data")


def test_nan_calibration_is_refused_naming_the_file_and_the_input(tmp_path):
    path = save_samples(tmp_path / "calib.npz", nan_at=(2, 0, 0, 0))
    with pytest.raises(SpecError) as info:
        calibration_source(str(path), tiny_spec(), min_samples=1)
    assert str(info.value).startswith(f"calibration data {path}: input 'image' has 1 NaN/inf value(s) (first in sample 2); "
                                      "clean the calibration data")
    feeds = [{k: v[i:i + 1] for k, v in tiny_feeds(4).items()} for i in range(4)]
    feeds[3]["audio"] = feeds[3]["audio"] * np.inf
    with pytest.raises(SpecError, match=r"^the calibration iterable: input 'audio' has \d+ NaN/inf value\(s\) \(first in sample 3\)"):
        calibration_source(feeds, tiny_spec(), min_samples=1)


# --------------------------------------------------------------------------- the command line


def test_cli_a_raising_factory_is_one_line_naming_it_and_the_traceback_is_under_v(user):
    folder, mod = user
    recipe = write_recipe(folder, f"{mod}:broken_factory")
    r = cli(folder, "export", recipe, "-o", folder / "B")
    line = one_error_line(r)
    assert line == (f"edgemm: error: the model factory {mod}:broken_factory raised RuntimeError: no weights here; "
                    "fix it (traceback with -v)")
    assert "bug in edgemm" not in r.stderr and not (folder / "B").exists()
    r = cli(folder, "-v", "export", recipe, "-o", folder / "B")
    assert r.returncode == 2 and "Traceback (most recent call last)" in r.stderr
    assert f"{mod}.py" in r.stderr and "in broken_factory" in r.stderr  # the user's own frame is shown
    assert r.stderr.rstrip().splitlines()[-1] == line


def test_cli_a_raising_training_generator_is_one_line_naming_it(user):
    folder, mod = user
    recipe = write_recipe(folder, f"{mod}:build", f'[data.training]\ngenerator = "{mod}:raising_pairs"\nn = 16\n')
    r = cli(folder, "-q", "export", recipe, "--prune", "0.5", "--no-verify", "-o", folder / "B")
    line = one_error_line(r)
    assert line == (f"edgemm: error: the training generator {mod}:raising_pairs raised ValueError: cannot render 16 pairs: "
                    "material missing; fix it (traceback with -v)")
    assert not (folder / "B").exists()


def test_cli_nan_training_data_is_refused_before_any_training(user):
    """The issue's case: NaN training data shipped a NaN model with exit 0 under --no-verify."""
    folder, mod = user
    train = save_samples(folder / "train.npz", nan_at=(6, 0, 1, 1))
    recipe = write_recipe(folder, f"{mod}:build", f'training = "{train.name}"')
    r = cli(folder, "-q", "export", recipe, "--prune", "0.5", "--no-verify", "-o", folder / "B")
    line = one_error_line(r)
    assert line.startswith(f"edgemm: error: training data {train}: input 'image' has 1 NaN/inf value(s) (first in sample 6)")
    assert not (folder / "B").exists()
