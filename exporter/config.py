"""Read and check the YAML configuration.

Every key has a default except `infobip.base_url` and one credential. `${NAME}` in a string
is replaced by that environment variable, durations read `90s`, `5m`, `1h`, `2d` or plain
seconds, and an unknown key is an error: a typo must not silently fall back to a default.
Any problem becomes one `ConfigError` whose message names the key.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

DEFAULT_PORT = 9877
MAX_LOOKBACK = 48 * 3600.0

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class ConfigError(Exception):
    """The configuration cannot be used; the message names the key."""


def parse_duration(value: object) -> float:
    """Seconds in `90s`, `5m`, `1h`, `2d`, `250ms` or a plain number."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 90s, 5m, 1h or 2d")
    if isinstance(value, int | float):
        return float(value)
    match = _DURATION.fullmatch(str(value).strip())
    if match is None:
        raise ValueError(f"{value!r} is not a duration such as 90s, 5m, 1h or 2d")
    return float(match.group(1)) * _UNITS[match.group(2)]


Duration = Annotated[float, BeforeValidator(parse_duration)]


def parse_listen(value: str) -> tuple[str, int]:
    """`HOST:PORT` (or `[v6]:PORT`, or `:PORT` for every address) as a pair."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"listen: {value!r} is not HOST:PORT")
    return host.strip("[]") or "0.0.0.0", int(port)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InfobipConfig(_Section):
    base_url: str = ""
    api_key: str | None = None
    api_key_file: Path | None = None
    username: str | None = None
    password: str | None = None
    password_file: Path | None = None
    timeout: Duration = Field(default=10.0, gt=0, le=300)

    @model_validator(mode="after")
    def _base_url_is_http(self) -> InfobipConfig:
        if self.base_url and not re.match(r"https?://[^/\s]+", self.base_url):
            raise ValueError("base_url: must start with https:// and name a host")
        return self

    def has_credential(self) -> bool:
        return bool(
            self.api_key
            or self.api_key_file
            or (self.username and (self.password or self.password_file))
        )


class Filters(_Section):
    from_: str | None = Field(default=None, alias="from")
    to: str | None = None
    general_status: (
        Literal["ACCEPTED", "PENDING", "UNDELIVERABLE", "DELIVERED", "EXPIRED", "REJECTED"] | None
    ) = None
    mcc: str | None = None
    mnc: str | None = None

    def as_params(self) -> dict[str, str]:
        values = self.model_dump(by_alias=True, exclude_none=True)
        return {key: str(value) for key, value in values.items()}


class CollectorConfig(_Section):
    interval: Duration = Field(default=60.0, ge=1)
    page_size: int = Field(default=1000, ge=1, le=1000)
    initial_lookback: Duration = Field(default=3600.0, ge=0, le=MAX_LOOKBACK)
    overlap: Duration = Field(default=120.0, ge=0, le=6 * 3600)
    rate_limit: int = Field(default=120, ge=1, le=120)
    state_path: str = ""
    filters: Filters = Field(default_factory=Filters)


class ServerConfig(_Section):
    listen: str = f"0.0.0.0:{DEFAULT_PORT}"
    web_config_file: Path | None = None

    @model_validator(mode="after")
    def _listen_is_host_port(self) -> ServerConfig:
        parse_listen(self.listen)
        return self


class Config(_Section):
    infobip: InfobipConfig = Field(default_factory=InfobipConfig)
    collector: CollectorConfig = Field(default_factory=CollectorConfig)
    server: ServerConfig = Field(default_factory=ServerConfig)


def load(path: Path | None, demo: bool = False) -> Config:
    """The configuration from a file (or defaults), with the environment applied."""
    raw: Any = {}
    if path is not None:
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except OSError as exc:
            raise ConfigError(f"config file {path}: {exc.strerror}") from exc
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark is not None else ""
            raise ConfigError(f"config file {path}: not valid YAML{where}") from exc
        if not isinstance(raw, dict):
            raise ConfigError(f"config file {path}: expected a mapping of sections at the top")
    raw = _substitute(raw, "")
    if os.environ.get("INFOBIP_BASE_URL"):
        raw.setdefault("infobip", {})
        if isinstance(raw["infobip"], dict):
            raw["infobip"]["base_url"] = os.environ["INFOBIP_BASE_URL"]

    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_first_problem(exc)) from None

    if not demo:
        if not config.infobip.base_url:
            raise ConfigError("infobip.base_url: required (or set INFOBIP_BASE_URL, or use --demo)")
        if not config.infobip.has_credential():
            raise ConfigError(
                "infobip.api_key: a credential is required: api_key, api_key_file, "
                "or username with password or password_file"
            )
    return config


def _substitute(value: Any, where: str) -> Any:
    if isinstance(value, dict):
        return {k: _substitute(v, f"{where}.{k}" if where else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, str):

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in os.environ:
                raise ConfigError(f"{where}: environment variable {name} is not set")
            return os.environ[name]

        return _VARIABLE.sub(replace, value)
    return value


def _first_problem(exc: ValidationError) -> str:
    error = exc.errors()[0]
    key = ".".join(str(part) for part in error["loc"]) or "config"
    if error["type"] == "extra_forbidden":
        return f"{key}: unknown key"
    message = str(error["msg"]).removeprefix("Value error, ")
    if re.match(r"\w+: ", message):
        # A check of a whole section names the key itself.
        return f"{key}.{message}" if key != "config" else message
    return f"{key}: {message}"
