"""Read and check the YAML configuration.

Every key has a default except `infobip.base_url` and one credential. `${NAME}` in a string
is replaced by that environment variable, durations read `90s`, `5m`, `1h`, `2d` or plain
seconds, and an unknown key is an error: a typo must not silently fall back to a default.
Any problem becomes one `ConfigError` whose message names the key.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import httpx
import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

DEFAULT_PORT = 9877
MAX_LOOKBACK = 48 * 3600.0
MAX_CONFIG_BYTES = 1 << 20

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
        seconds = float(value)
    else:
        match = _DURATION.fullmatch(str(value).strip())
        if match is None:
            raise ValueError(f"{value!r} is not a duration such as 90s, 5m, 1h or 2d")
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if not math.isfinite(seconds):
        raise ValueError(f"{value!r} is not a finite duration")
    return seconds


def _spoken(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def duration(low: float, high: float, low_open: bool = False) -> Any:
    """A duration field that must lie between two bounds, said in the units people use."""

    def within(seconds: float) -> float:
        if seconds < low or seconds > high or (low_open and seconds == low):
            above = "above" if low_open else "at least"
            raise ValueError(f"must be {above} {_spoken(low)} and at most {_spoken(high)}")
        return seconds

    return Annotated[float, BeforeValidator(parse_duration), AfterValidator(within)]


def parse_listen(value: str) -> tuple[str, int]:
    """`HOST:PORT` (or `[v6]:PORT`, or `:PORT` for every address) as a pair."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"listen: {value!r} is not HOST:PORT")
    return host.strip("[]") or "0.0.0.0", int(port)


def check_base_url(url: str) -> None:
    """Raise ValueError unless `url` is an account's http(s) base URL."""
    try:
        parsed = httpx.URL(url)
        port = parsed.port
    except (httpx.InvalidURL, ValueError) as exc:
        raise ValueError(f"base_url: not a URL ({exc})") from None
    if parsed.scheme not in ("http", "https") or not parsed.host or " " in url:
        raise ValueError("base_url: must start with https:// (or http://) and name a host")
    if port is not None and not 0 < port < 65536:
        raise ValueError("base_url: the port must be between 1 and 65535")
    if parsed.path.rstrip("/").endswith("/tts/3/logs"):
        raise ValueError("base_url: give the account's base URL, without /tts/3/logs")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InfobipConfig(_Section):
    base_url: str = ""
    api_key: str | None = None
    api_key_file: Path | None = None
    username: str | None = None
    password: str | None = None
    password_file: Path | None = None
    timeout: duration(0, 300, low_open=True) = 10.0  # type: ignore[valid-type]

    @model_validator(mode="after")
    def _base_url_is_http(self) -> InfobipConfig:
        if self.base_url:
            check_base_url(self.base_url)
        ways = [bool(self.api_key), bool(self.api_key_file), bool(self.username)]
        if sum(ways) > 1:
            raise ValueError("api_key: give one credential: api_key, api_key_file, or username")
        if self.password and self.password_file:
            raise ValueError("password_file: give password or password_file, not both")
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
    interval: duration(1, 86400) = 60.0  # type: ignore[valid-type]
    page_size: int = Field(default=1000, ge=1, le=1000, strict=True)
    initial_lookback: duration(0, MAX_LOOKBACK) = 3600.0  # type: ignore[valid-type]
    overlap: duration(0, 6 * 3600) = 120.0  # type: ignore[valid-type]
    rate_limit: int = Field(default=120, ge=1, le=120, strict=True)
    state_path: str = ""

    @model_validator(mode="after")
    def _state_path_is_a_file(self) -> CollectorConfig:
        if self.state_path and Path(self.state_path).is_dir():
            raise ValueError(
                "state_path: is a folder; name a file in it, such as "
                f"{Path(self.state_path) / 'state.db'}"
            )
        return self

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
            with path.open("rb") as file:
                data = file.read(MAX_CONFIG_BYTES + 1)
            if len(data) > MAX_CONFIG_BYTES:
                raise ConfigError(f"config file {path}: larger than 1 MiB; is it the right file?")
            # _UniqueKeyLoader is a SafeLoader, so this is yaml.safe_load with one more check.
            raw = yaml.load(data.decode("utf-8"), _UniqueKeyLoader) or {}  # noqa: S506
        except OSError as exc:
            raise ConfigError(f"config file {path}: {exc.strerror}") from exc
        except UnicodeDecodeError as exc:
            raise ConfigError(
                f"config file {path}: not UTF-8 text (at offset {exc.start})"
            ) from exc
        except _DuplicateKeyError as exc:
            raise ConfigError(f"config file {path}: {exc}") from exc
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
        _check_credential_files(config.infobip)
        if not config.infobip.base_url:
            raise ConfigError("infobip.base_url: required (or set INFOBIP_BASE_URL, or use --demo)")
        if not config.infobip.has_credential():
            raise ConfigError(
                "infobip.api_key: a credential is required: api_key, api_key_file, "
                "or username with password or password_file"
            )
    return config


class _DuplicateKeyError(yaml.YAMLError):
    """A mapping names one key twice: the second would silently win."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                line = key_node.start_mark.line + 1
                raise _DuplicateKeyError(f"key {key!r} given twice (line {line})")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _check_credential_files(infobip: InfobipConfig) -> None:
    for key in ("api_key_file", "password_file"):
        path = getattr(infobip, key)
        if path is None:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or "not UTF-8 text"
            raise ConfigError(f"infobip.{key}: cannot read {path}: {reason}") from None
        if not text.strip():
            raise ConfigError(f"infobip.{key}: {path} is empty")


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
