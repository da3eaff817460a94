"""The per-user configuration file: named profiles of URL(s) and keys.

``prelabel login`` writes it; every other command reads it. The file is JSON at
``$PRELABEL_CONFIG``, else ``$XDG_CONFIG_HOME/prelabel/config.json``, else
``~/.config/prelabel/config.json``. It holds API keys, so it is created with mode
0600 (its folder 0700) and rewritten whole through a temporary file of the same
mode, never readable by others even for a moment.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic import ValidationError as PydanticValidationError

from prelabel_client.endpoints import SERVICES, Service, field_name
from prelabel_client.errors import ClientError

DEFAULT_PROFILE = "default"
FILE_MODE = 0o600
DIR_MODE = 0o700


class Profile(BaseModel):
    """One set of credentials: a base URL (or per-service URLs) and a project key."""

    model_config = ConfigDict(extra="ignore")

    url: str | None = None
    api_key: str | None = None
    admin_key: str | None = None
    service_urls: dict[Service, str] = Field(default_factory=dict)
    project_id: str | None = None
    """The key's project when it was checked at login (shown by ``whoami``)."""

    def settings_values(self) -> dict[str, str]:
        """The profile as :class:`~prelabel_client.settings.ClientSettings` fields."""
        values = {
            key: value
            for key, value in (
                ("url", self.url),
                ("api_key", self.api_key),
                ("admin_key", self.admin_key),
            )
            if value
        }
        for service, url in self.service_urls.items():
            values[field_name(service)] = url
        return values


class ConfigFile(BaseModel):
    """The whole file: profiles by name and the one used when none is named."""

    model_config = ConfigDict(extra="ignore")

    current: str = DEFAULT_PROFILE
    profiles: dict[str, Profile] = Field(default_factory=dict)


def config_path(environ: Mapping[str, str] | None = None) -> Path:
    """Where the configuration file lives."""
    env = os.environ if environ is None else environ
    if env.get("PRELABEL_CONFIG"):
        return Path(env["PRELABEL_CONFIG"]).expanduser()
    base = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base).expanduser() / "prelabel" / "config.json"


def load(path: Path) -> ConfigFile:
    """The file's content (empty when there is no file yet)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ConfigFile()
    except OSError as exc:
        raise ClientError(f"cannot read the configuration file {path}: {exc.strerror}") from exc
    try:
        return ConfigFile.model_validate(json.loads(text))
    except (ValueError, PydanticValidationError) as exc:
        raise ClientError(
            f"the configuration file {path} is not valid ({type(exc).__name__}); "
            "fix it or remove it and run `prelabel login` again"
        ) from exc


def save(path: Path, config: ConfigFile) -> None:
    """Write the file with mode 0600 (atomically: a reader sees the old or the new)."""
    path.parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    data: dict[str, Any] = config.model_dump(mode="json")
    # mkstemp creates the file 0600 already; chmod again in case of an odd umask/FS.
    fd, temporary = tempfile.mkstemp(prefix=".config-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            os.fchmod(handle.fileno(), FILE_MODE)
            json.dump(data, handle, indent=2, sort_keys=True)
            handle.write("\n")
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    os.chmod(path, FILE_MODE)


def parse_service_urls(values: list[str]) -> dict[Service, str]:
    """``--service-url dataset=http://...`` options as a mapping."""
    found: dict[Service, str] = {}
    for value in values:
        name, sep, url = value.partition("=")
        if not sep or not url:
            raise ClientError(f"--service-url takes SERVICE=URL, got {value!r}")
        if name not in SERVICES:
            raise ClientError(
                f"--service-url: unknown service {name!r} (one of {', '.join(SERVICES)})"
            )
        found[name] = url.rstrip("/")
    return found
