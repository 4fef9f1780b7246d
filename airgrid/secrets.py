"""Secrets in config files: the one list of secret keys, masking, permissions, indirection.

Every key named in `SECRET_KEYS` (matched on the last part of its dotted path, at any
depth) is a secret: its value is never repeated in an error message, and a config file
that holds one while other accounts can read it is refused. Instead of the value itself a
config may name where to find it:

    password_file = "/run/credentials/airgrid-collector.service/influx"   # file content
    password_env = "AIRGRID_INFLUX_PASSWORD"                              # environment

A secret file must be private to its owner too; a trailing newline is stripped.
"""

from __future__ import annotations

import enum
import os
import re
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class SecretKind(enum.Enum):
    VALUE = "value"  # the value itself is the secret
    CREDENTIAL_URL = "credential_url"  # a URL, secret when it carries user:password@
    FILE = "file"  # the value names a file that is a secret (a private key)


#: Every secret key of every config (agent, collector, alerting channels): last key part.
SECRET_KEYS: Mapping[str, SecretKind] = {
    "password": SecretKind.VALUE,  # MQTT broker, InfluxDB v1, SMS gateway basic auth
    "token": SecretKind.VALUE,  # InfluxDB v2 API token, [alerting.ack], SMS gateway bearer
    "secret": SecretKind.VALUE,  # webhook HMAC secret
    "api_key": SecretKind.VALUE,  # SMS gateway key
    "api_secret": SecretKind.VALUE,  # SMS gateway key secret
    "secret_id": SecretKind.VALUE,  # Tencent Cloud API key: SecretId
    "secret_key": SecretKind.VALUE,  # Tencent Cloud API key: SecretKey
    "urls": SecretKind.CREDENTIAL_URL,  # AMQP broker URLs (amqp://user:password@host)
    "url": SecretKind.CREDENTIAL_URL,  # InfluxDB, webhook, gateway URLs
    "key_file": SecretKind.FILE,  # the MQTT client's TLS private key
}

FILE_SUFFIX = "_file"
ENV_SUFFIX = "_env"
HIDDEN = "(a value, not shown: it is a secret)"
#: Mode bits that make a file readable (or writable) by every account.
WORLD_BITS = stat.S_IROTH | stat.S_IWOTH
_URL_CREDENTIALS = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^:/@\s]*):[^@/\s]*@")


def secret_kind(key: str) -> SecretKind | None:
    """The kind of secret a dotted key holds, or None when it holds none."""
    last = key.rsplit(".", 1)[-1]
    last = last.split("[", 1)[0].lower()
    return SECRET_KEYS.get(last)


def is_secret_value(key: str, value: object) -> bool:
    """Whether `value` under `key` is a secret that must not be shown or left readable."""
    kind = secret_kind(key)
    if kind is SecretKind.VALUE:
        return value is not None and value != ""
    if kind is SecretKind.CREDENTIAL_URL:
        return _has_credentials(value)
    return False


def _has_credentials(value: object) -> bool:
    if isinstance(value, str):
        return bool(_URL_CREDENTIALS.search(value))
    if isinstance(value, list | tuple):
        return any(_has_credentials(v) for v in value)
    return False


def mask(key: str, value: object) -> str:
    """`repr(value)` fit for an error message: secrets hidden, URL passwords starred."""
    if secret_kind(key) is SecretKind.VALUE:
        return HIDDEN
    return _URL_CREDENTIALS.sub(r"\g<scheme>\g<user>:***@", repr(_masked(value)))


def _masked(value: object) -> object:
    if isinstance(value, Mapping):
        return {k: HIDDEN if secret_kind(str(k)) is SecretKind.VALUE else _masked(v)
                for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_masked(v) for v in value]
    return value


def world_accessible(path: Path) -> bool:
    return bool(os.stat(path).st_mode & WORLD_BITS)


def file_mode(path: Path) -> str:
    return stat.filemode(os.stat(path).st_mode)


@dataclass(frozen=True)
class SecretProblem:
    """What is wrong with a secret: dotted key, what was expected, what was found."""

    key: str
    expected: str
    found: str | None = None


def resolve(data: Mapping[str, Any], env: Mapping[str, str] | None = None,
            prefix: str = "") -> tuple[dict[str, Any], list[SecretProblem]]:
    """`data` with every `KEY_file` / `KEY_env` of a secret key replaced by `KEY`'s value.

    Files must be readable by their owner only; `KEY` together with its `_file` or `_env`
    form is a problem. Tables are walked recursively (arrays of tables too).
    """
    environ = os.environ if env is None else env
    out: dict[str, Any] = {}
    problems: list[SecretProblem] = []
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out[key], sub = resolve(value, environ, f"{path}.")
            problems += sub
        elif isinstance(value, list) and any(isinstance(v, Mapping) for v in value):
            items: list[Any] = []
            for i, v in enumerate(value):
                if isinstance(v, Mapping):
                    item, sub = resolve(v, environ, f"{path}[{i}].")
                    items.append(item)
                    problems += sub
                else:
                    items.append(v)
            out[key] = items
        else:
            out[key] = value
    for key in list(out):
        base, suffix = _indirection(key)
        if base is None:
            continue
        path = f"{prefix}{key}"
        ref = out.pop(key)
        if base in data or f"{base}{FILE_SUFFIX if suffix == ENV_SUFFIX else ENV_SUFFIX}" in data:
            problems.append(SecretProblem(path, f"only one of {base}, {base}{FILE_SUFFIX} and "
                                          f"{base}{ENV_SUFFIX}", "several"))
            continue
        if not isinstance(ref, str) or not ref:
            problems.append(SecretProblem(
                path, "a file path" if suffix == FILE_SUFFIX else "an environment variable name",
                repr(ref)))
            continue
        if suffix == ENV_SUFFIX:
            if ref not in environ:
                problems.append(SecretProblem(path, f"environment variable {ref} to be set",
                                              "it is not"))
                continue
            out[base] = environ[ref]
            continue
        secret = Path(ref)
        try:
            exposed = world_accessible(secret)
            text = secret.read_text(encoding="utf-8")
        except (OSError, ValueError) as exc:  # ValueError: a NUL in the path, or not UTF-8
            problems.append(SecretProblem(path, "a readable UTF-8 file holding the secret",
                                          f"{exc.__class__.__name__}: {exc}"))
            continue
        if exposed:
            problems.append(SecretProblem(path, f"{secret} readable only by its owner "
                                          "(chmod 600)", f"mode {file_mode(secret)}"))
            continue
        out[base] = text.removesuffix("\n")
    return out, problems


def _indirection(key: str) -> tuple[str | None, str]:
    for suffix in (FILE_SUFFIX, ENV_SUFFIX):
        base = key.removesuffix(suffix)
        if base != key and SECRET_KEYS.get(base.lower()) in (SecretKind.VALUE,
                                                             SecretKind.CREDENTIAL_URL):
            return base, suffix
    return None, ""


def _walk(data: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from _walk(value, f"{path}.")
        elif isinstance(value, list) and any(isinstance(v, Mapping) for v in value):
            for i, v in enumerate(value):
                if isinstance(v, Mapping):
                    yield from _walk(v, f"{path}[{i}].")
        else:
            yield path, value


def exposed_secrets(path: Path, data: Mapping[str, Any]) -> list[SecretProblem]:
    """Secrets in the file at `path` (as parsed into `data`) that other accounts can read.

    A secret value written in a world-readable file, and a secret file (a private key)
    that is world-readable itself. Group-readable is the operator's choice (an `airgrid`
    group). Missing key files are left to the component that opens them.
    """
    problems: list[SecretProblem] = []
    try:
        file_exposed = world_accessible(path)
    except OSError:
        return problems
    for key, value in _walk(data):
        kind = secret_kind(key)
        if kind is None:
            continue
        if kind is SecretKind.FILE:
            if not isinstance(value, str):
                continue
            secret = Path(value) if Path(value).is_absolute() else path.parent / value
            try:
                if world_accessible(secret):
                    problems.append(SecretProblem(key, f"{secret} readable only by its owner "
                                                  "(chmod 600)", f"mode {file_mode(secret)}"))
            except (OSError, ValueError):  # missing, or not a path at all (a NUL in it)
                continue
        elif file_exposed and is_secret_value(key, value):
            problems.append(SecretProblem(key, "a file others cannot read (chmod 600) because "
                                          f"it holds a secret; the file's mode is "
                                          f"{file_mode(path)}"))
    return problems
