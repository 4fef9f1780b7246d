"""Refuse config files that hold secrets while other users can read them.

A broker password or a private key readable by every account on the machine is as good as
published, so loading such a config is a config error (file, key, expected mode), not a
warning that scrolls past.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from airgrid.config_schema import ConfigError

#: Mode bits that make a file readable (or writable) by every account.
WORLD_BITS = stat.S_IROTH | stat.S_IWOTH


def world_accessible(path: Path) -> bool:
    return bool(os.stat(path).st_mode & WORLD_BITS)


def _lookup(data: Mapping[str, Any], dotted: str) -> object:
    node: object = data
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def refuse_world_readable(
    path: Path,
    data: Mapping[str, Any],
    secret_keys: Iterable[str] = (),
    secret_file_keys: Iterable[str] = (),
) -> None:
    """Raise ConfigError when `path` holds a secret and is world-accessible.

    `secret_keys` are dotted keys whose value is itself a secret (a password), checked
    against the config file's own mode; `secret_file_keys` name files that are secrets
    (a private key), each checked against its own mode. Missing files are left to the
    component that opens them, which reports them with its own error.
    """
    for key in secret_keys:
        if _lookup(data, key) is not None and world_accessible(path):
            mode = stat.filemode(os.stat(path).st_mode)
            raise ConfigError(
                path, key, "a file others cannot read (chmod 600) because it holds a "
                f"secret; the file's mode is {mode}",
            )
    for key in secret_file_keys:
        value = _lookup(data, key)
        if not isinstance(value, str):
            continue
        secret = Path(value)
        if not secret.is_absolute():
            secret = path.parent / secret
        try:
            exposed = world_accessible(secret)
        except OSError:
            continue
        if exposed:
            raise ConfigError(
                path, key, f"{secret} readable only by its owner (chmod 600)",
                f"mode {stat.filemode(os.stat(secret).st_mode)}",
            )
