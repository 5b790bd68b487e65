"""Which settings a run reads: a key given where nothing reads it is refused, with the reason.

Each config section says which of its keys its own and the other sections' settings leave
unread (an ``unused_keys(...) -> {key: why}`` method next to its fields: micro-batches under
``async``, IO noise under ``perfect`` reads, pulse-train length under ``pulse_type: none``);
:meth:`aimcsim.config.Config.unused_keys` gathers them with their dotted paths. This module
is the one check built on them:

- :func:`given_keys` lists what the user wrote (dotted leaf paths, before any preset fills
  a section), so a key left at its default is never an error;
- :func:`check_given` refuses the first given key that nothing reads, naming it and why;
- :func:`drop_unused` removes unread keys from the resolved config, so ``config.yaml``
  lists only what applies;
- :func:`check_sweep` applies the rule per sweep: a key that applies at some point of a
  grid is fine (the points that ignore it are reported), one that applies at none is refused.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from .errors import UnusedKeyError

Unused = dict[str, str]  # dotted key (or section) -> why nothing reads it under these settings
#: aliases a section accepts for a field (aihwkit's names), mapped to the field
ALIASES = {"is_perfect": "perfect"}


def prefixed(prefix: str, unused: Mapping[str, str]) -> Unused:
    """A section's unread keys with the section's dotted path in front."""
    return {f"{prefix}.{key}": why for key, why in unused.items()}


def given_keys(data: object, path: str = "") -> list[str]:
    """Dotted paths of every leaf the user wrote, in the order written (mappings are walked,
    and lists of mappings by index: ``device.unit_cell_devices.0.dw_min``). A null leaf is the
    default (``--set pipeline.stages=null`` hands the value back), so it is not a given key."""
    if isinstance(data, Mapping) and (data or not path):
        return [k for key, value in data.items()
                for k in given_keys(value, f"{path}.{ALIASES.get(key, key)}" if path else str(key))]
    if isinstance(data, list) and data and all(isinstance(v, Mapping) for v in data) and path:
        return [k for i, value in enumerate(data) for k in given_keys(value, f"{path}.{i}")]
    return [path] if path and data is not None else []


def reason(key: str, unused: Mapping[str, str]) -> str | None:
    """Why ``key`` is unread: its own entry, or that of a section holding it."""
    parts = key.split(".")
    for end in range(len(parts), 0, -1):
        found = unused.get(".".join(parts[:end]))
        if found is not None:
            return found
    return None


def check_given(given: Iterable[str], unused: Mapping[str, str]) -> None:
    """Refuse the first given key that nothing reads: ``UnusedKeyError('key: why')``."""
    for key in given:
        why = reason(key, unused)
        if why is not None:
            raise UnusedKeyError(f"{key}: {why}")


def drop_unused(tree: dict, unused: Mapping[str, str], path: str = "") -> dict:
    """``tree`` (a resolved config) without the keys nothing reads."""
    out = {}
    for key, value in tree.items():
        dotted = f"{path}.{key}" if path else str(key)
        if dotted in unused:
            continue
        if isinstance(value, dict):
            value = drop_unused(value, unused, dotted)
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            value = [drop_unused(v, unused, f"{dotted}.{i}") for i, v in enumerate(value)]
        out[key] = value
    return out


def check_sweep(given: Iterable[str], unused_per_point: list[Mapping[str, str]],
                names: list[str]) -> dict[str, list[str]]:
    """The rule per sweep: refuse a given key that no point reads (naming the first point's
    reason); return key -> the points that ignore it, for the keys some points read."""
    ignored: dict[str, list[str]] = {}
    for key in given:
        reasons = [reason(key, unused) for unused in unused_per_point]
        if all(r is not None for r in reasons):
            where = "" if len(names) == 1 else f" at every point of the sweep (e.g. {names[0]})"
            raise UnusedKeyError(f"{key}: {reasons[0]}{where}")
        skipped = [name for name, r in zip(names, reasons) if r is not None]
        if skipped:
            ignored[key] = skipped
    return ignored
