"""aimcsim: cycle-accurate simulation of pipeline training on analog in-memory accelerators."""

from .errors import ConfigError
from .tile import AnalogTile, OpReport

__version__ = "0.1.0"
__all__ = ["AnalogTile", "OpReport", "ConfigError", "__version__"]
