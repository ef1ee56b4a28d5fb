"""Generic sensor arrays: any set of sensors with positions, directions and optional module/string
structure, no cylinder assumed (KM3NeT's optical modules on strings, read from ``.detx`` files).
Graph and point-cloud models run on them; there is no image map."""

from recoml.families.sensor_array.detector import SensorArrayDetector
from recoml.families.sensor_array.detx import load_detx, read_detx

__all__ = ["SensorArrayDetector", "load_detx", "read_detx"]
