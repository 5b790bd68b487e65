"""aimcsim: cycle-accurate simulation of pipeline training on analog in-memory accelerators."""

from .config import Config, load_config
from .errors import ConfigError
from .run import Result, simulate
from .sweep import sweep, sweeps
from .tile import AnalogTile, OpReport

__version__ = "0.1.0"
__all__ = ["AnalogTile", "OpReport", "ConfigError", "Config", "load_config", "simulate", "Result", "sweep", "sweeps",
           "__version__"]
