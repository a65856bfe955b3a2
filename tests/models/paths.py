"""Repository paths used by the tests (import from here, not from conftest: several conftest.py files exist)."""
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "export" / "avnet.toml"
EVAL_NPZ = ROOT / "calibration_data" / "avmnist" / "eval.npz"
CALIB_NPZ = ROOT / "calibration_data" / "avmnist" / "calib.npz"
