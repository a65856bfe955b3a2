"""edgemm-imu: the ``imu`` modality (accelerometer + gyroscope windows) as an edgemm plugin."""
from .csvreader import ImuFormatError, parse_imu_lines, parse_imu_uri
from .modality import ImuModality, ImuPreprocess
from .source import ImuLineSource, ImuWindowSource

__all__ = ["ImuModality", "ImuPreprocess", "ImuFormatError", "parse_imu_lines", "parse_imu_uri", "ImuLineSource", "ImuWindowSource"]
