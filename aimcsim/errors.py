"""One-line errors for bad input.

Every invalid setting a user can make (config key, API argument, data file) surfaces as a
:class:`ConfigError` whose message is a single line that starts with the offending key path
and says what is allowed. ``ConfigError`` is a ``ValueError`` so library callers can catch
the usual exception type.
"""

from __future__ import annotations

import difflib
import typing
from collections.abc import Iterable

from pydantic import BaseModel, ValidationError


class ConfigError(ValueError):
    """Invalid input; the message is one line naming the key path and what is allowed."""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """' (did you mean 'x'?)' for the closest choice, or '' when nothing is close."""
    close = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _join(prefix: str, loc: Iterable[object]) -> str:
    parts = [prefix] if prefix else []
    parts += [str(p) for p in loc]
    return ".".join(parts) if parts else "<root>"


def _model_in(annotation: object) -> type[BaseModel] | None:
    """The pydantic model inside an annotation (``Model``, ``Model | None``), if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _allowed_fields(model: type[BaseModel], loc: tuple) -> list[str]:
    """Field names allowed at ``loc`` (walking nested models), for unknown-key messages."""
    current: type[BaseModel] | None = model
    for part in loc[:-1]:
        if current is None or not isinstance(part, str) or part not in current.model_fields:
            return []
        current = _model_in(current.model_fields[part].annotation)
    return sorted(current.model_fields) if current is not None else []


def from_validation_error(exc: ValidationError, prefix: str, model: type[BaseModel]) -> ConfigError:
    """Turn pydantic's multi-line report into one line about the first problem."""
    err = exc.errors()[0]
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    where = _join(prefix, loc)
    kind = err["type"]
    if kind == "extra_forbidden":
        allowed = _allowed_fields(model, loc)
        hint = did_you_mean(loc[-1], allowed) if loc else ""
        listing = f"; allowed: {', '.join(allowed)}" if allowed else ""
        return ConfigError(f"{where}: unknown key{hint}{listing}")
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    value = err.get("input")
    shown = "" if isinstance(value, (dict, list)) or value is None else f" (got {value!r})"
    if not loc and not prefix:  # a whole-config check: its message names the keys itself
        return ConfigError(f"{msg}{shown}")
    key, sep, rest = msg.partition(": ")
    if sep and isinstance(value, dict) and key in _allowed_fields(model, (*loc, key)):
        return ConfigError(f"{_join(prefix, (*loc, key))}: {rest}")  # a section's check naming its field
    return ConfigError(f"{where}: {msg}{shown}")


def parse_model(model: type[BaseModel], value: object, prefix: str) -> BaseModel:
    """Validate ``value`` (a mapping, an instance of ``model`` or None) into ``model``."""
    if isinstance(value, model):
        return value
    if value is None:
        value = {}
    if isinstance(value, BaseModel):
        value = value.model_dump()
    if not isinstance(value, dict):
        raise ConfigError(f"{prefix or '<root>'}: expected a mapping of settings, got {type(value).__name__}")
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise from_validation_error(exc, prefix, model) from None


class UnusedKeyError(ConfigError):
    """A key was given where nothing reads it under the chosen settings (see :mod:`aimcsim.applicability`)."""
