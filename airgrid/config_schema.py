"""Validating nested config tables (from TOML or YAML) with errors naming file and key."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Keys whose values are never repeated in an error message.
SECRET_KEY_PARTS = ("password", "token", "secret", "key_pem")


def _is_secret(key: str) -> bool:
    last = key.rsplit(".", 1)[-1].lower()
    return any(part in last for part in SECRET_KEY_PARTS)


class ConfigError(ValueError):
    """A config file is wrong; the message names the file, the key and what was expected."""

    def __init__(self, file: Path | str, key: str, expected: str, got: object = None) -> None:
        if got is not None and _is_secret(key):
            got = "(a value, not shown: it is a secret)"  # error messages end up in logs
        got_text = "" if got is None else f", got {got!r}"
        super().__init__(f"{file}: {key}: expected {expected}{got_text}")
        self.file = str(file)
        self.key = key
        self.expected = expected


@dataclass(frozen=True)
class Field:
    """One key: its type(s), default (required when `required`), and an optional check."""

    types: type | tuple[type, ...]
    default: Any = None
    required: bool = False
    check: Callable[[Any], bool] | None = None
    expected: str = ""


Schema = Mapping[str, "Field | Mapping[str, Any]"]


def load_toml(path: Path) -> dict[str, Any]:
    """A TOML file as a dict; any problem reading or parsing it is a ConfigError."""
    import tomllib

    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(path, "(file)", "a readable TOML file", str(exc)) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, "(syntax)", "valid TOML", str(exc)) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(path, "(file)", "UTF-8 text", str(exc)) from exc


def _type_name(types: type | tuple[type, ...]) -> str:
    ts = types if isinstance(types, tuple) else (types,)
    return " or ".join(t.__name__ for t in ts)


def validate(
    data: Mapping[str, Any], schema: Schema, file: Path | str, prefix: str = ""
) -> dict[str, Any]:
    """Return a dict with defaults filled in; raise ConfigError on the first problem."""
    out: dict[str, Any] = {}
    for key in data:
        if key not in schema:
            raise ConfigError(file, f"{prefix}{key}", f"one of {sorted(schema)}", "unknown key")
    for key, spec in schema.items():
        path = f"{prefix}{key}"
        if not isinstance(spec, Field):
            sub = data.get(key, {})
            if not isinstance(sub, Mapping):
                raise ConfigError(file, path, "a table", sub)
            out[key] = validate(sub, spec, file, prefix=f"{path}.")
            continue
        if key not in data:
            if spec.required:
                expected = spec.expected or _type_name(spec.types)
                raise ConfigError(file, path, f"{expected} (required)")
            out[key] = spec.default
            continue
        value = data[key]
        types = spec.types if isinstance(spec.types, tuple) else (spec.types,)
        # TOML ints are acceptable where floats are expected; bools are never ints here.
        if float in types and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if isinstance(value, bool) and bool not in types:
            raise ConfigError(file, path, spec.expected or _type_name(spec.types), value)
        if not isinstance(value, types):
            raise ConfigError(file, path, spec.expected or _type_name(spec.types), value)
        if spec.check is not None and not spec.check(value):
            raise ConfigError(file, path, spec.expected, value)
        out[key] = value
    return out
