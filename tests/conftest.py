"""Shared fixtures: the shipped avnet bundle (exported once per session), a tiny two-input model,
and auto-skips for tests that need an optional backend or device."""
from __future__ import annotations

import functools
import shutil
from pathlib import Path

import numpy as np
import pytest

from models.paths import CALIB_NPZ, EVAL_NPZ, RECIPE, ROOT  # noqa: F401


# --------------------------------------------------------------------------- auto-skips


@functools.lru_cache(maxsize=None)
def _availability(name: str):
    from edgemm.backends.registry import get_backend

    return get_backend(name).availability()


@functools.lru_cache(maxsize=None)
def _cuda_visible() -> bool:
    from edgemm.backends.tensorrt.cuda import list_gpus

    gpus, _why = list_gpus()  # never raises for a missing or broken driver
    if gpus:
        return True
    try:
        import torch

        return bool(torch.cuda.is_available())
    except ImportError:
        return False


def _skip_reason(marker: str) -> str | None:
    if marker == "openvino":
        # Skip only when OpenVINO is absent; installed but broken must fail the tests, not hide them.
        import importlib.util

        if importlib.util.find_spec("openvino") is None:
            av = _availability("openvino")
            return f"openvino is not installed (install: {av.install})"
        return None
    if marker == "tensorrt":
        av = _availability("tensorrt")
        return None if av.available else f"tensorrt backend unavailable: {av.reason} (install: {av.install})"
    if marker == "camera":
        import glob

        return None if glob.glob("/dev/video*") else "needs a camera device (/dev/video*); none on this machine"
    if marker == "gpu":
        return None if _cuda_visible() else "no CUDA device visible (cuda-python driver query and torch.cuda both found none)"
    return None


def pytest_collection_modifyitems(config, items):
    for item in items:
        for marker in ("openvino", "tensorrt", "gpu", "camera"):
            if item.get_closest_marker(marker) is not None:
                reason = _skip_reason(marker)
                if reason:
                    item.add_marker(pytest.mark.skip(reason=reason))


# --------------------------------------------------------------------------- data


@pytest.fixture(scope="session")
def eval_arrays() -> dict[str, np.ndarray]:
    """The raw evaluation split (frames, 8 kHz int16 waveforms, labels)."""
    with np.load(EVAL_NPZ) as z:
        return {k: z[k] for k in z.files}


@pytest.fixture(scope="session")
def avnet_recipe_path() -> Path:
    return RECIPE


# --------------------------------------------------------------------------- bundles


@pytest.fixture(scope="session")
def avnet_bundle_dir(tmp_path_factory) -> Path:
    """The shipped avnet recipe exported once (about 25 s). Read-only: copy it before tampering."""
    import edgemm

    out = tmp_path_factory.mktemp("avnet") / "bundle"
    edgemm.export(str(RECIPE), output=out)
    return out


@pytest.fixture
def avnet_bundle_copy(avnet_bundle_dir, tmp_path) -> Path:
    """A private copy of the session bundle, free to tamper with."""
    dst = tmp_path / "bundle"
    shutil.copytree(avnet_bundle_dir, dst)
    return dst


@pytest.fixture
def tiny_model():
    """Factory: ``tiny_model(seed=0)`` -> a fresh TinyAV (image [B,3,8,8] + audio [B,1,8,10] -> two heads)."""
    from models.tiny import TinyAV

    return lambda seed=0: TinyAV(seed)


@pytest.fixture(scope="session")
def tiny_bundle_dir(tmp_path_factory) -> Path:
    """The tiny model exported once with an explicit IOSpec (named heads, labels), no evaluation data."""
    import edgemm
    from models.tiny import TinyAV, tiny_feeds, tiny_spec

    out = tmp_path_factory.mktemp("tiny") / "bundle"
    edgemm.export(TinyAV(0), example_inputs=tiny_feeds(2), spec=tiny_spec(), output=out)
    return out


@pytest.fixture
def tiny_bundle_copy(tiny_bundle_dir, tmp_path) -> Path:
    dst = tmp_path / "tiny"
    shutil.copytree(tiny_bundle_dir, dst)
    return dst
