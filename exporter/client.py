"""Fetch pages of voice logs from Infobip over HTTP.

Every failure leaves this module as one `ApiError` whose `reason` is the label the poll-error
metric uses, and whose `detail` quotes what the API said (either of its error body shapes), or
says that the body was not JSON at all. Credentials never appear in an error or a log line.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import httpx
import orjson

from exporter import __version__

log = logging.getLogger(__name__)

LOGS_PATH = "/tts/3/logs"

MAX_BODY = 16 << 20
"""A page of 1,000 logs is under a megabyte; anything past this is not a logs answer."""


class ApiError(Exception):
    """A call to the logs endpoint that gave no usable answer."""

    def __init__(
        self,
        reason: str,
        detail: str,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.status = status
        self.retry_after = retry_after


class Credentials:
    """The Authorization header, from a key, a key file, or a user name and password.

    Files are read again whenever their modification time changes, so a rotated Secret is
    picked up at the next request without a restart.
    """

    def __init__(
        self,
        api_key: str | None = None,
        api_key_file: Path | None = None,
        username: str | None = None,
        password: str | None = None,
        password_file: Path | None = None,
    ) -> None:
        self._api_key = api_key
        self._api_key_file = api_key_file
        self._username = username
        self._password = password
        self._password_file = password_file
        self._cache: dict[Path, tuple[tuple[int, int, int], str]] = {}

    def header(self) -> str:
        if self._api_key_file is not None:
            return f"App {self._read(self._api_key_file)}"
        if self._api_key is not None:
            return f"App {self._api_key}"
        password = self._password or ""
        if self._password_file is not None:
            password = self._read(self._password_file)
        pair = f"{self._username}:{password}".encode()
        return f"Basic {base64.b64encode(pair).decode()}"

    def _read(self, path: Path) -> str:
        try:
            # Size and inode beside the time: a rewrite within one timestamp tick, or a
            # Secret swapped by rename, is still noticed.
            info = path.stat()
            version = (info.st_mtime_ns, info.st_size, info.st_ino)
            cached = self._cache.get(path)
            if cached is not None and cached[0] == version:
                return cached[1]
            value = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            detail = f"credential file {path} unreadable: {exc.strerror}"
            raise ApiError("unauthorized", detail) from exc
        if cached is not None:
            log.info("credential file changed, reloaded path=%s", path)
        self._cache[path] = (version, value)
        return value


class RateLimiter:
    """At most `per_minute` requests in any 60 seconds, shared by every poll."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self._clock = clock
        self._sent: deque[float] = deque()
        self._lock = threading.Lock()

    def wait_time(self) -> float:
        """Seconds until one more request is allowed; 0 when it is allowed now."""
        with self._lock:
            now = self._clock()
            while self._sent and self._sent[0] <= now - 60:
                self._sent.popleft()
            if len(self._sent) < self.per_minute:
                return 0.0
            return self._sent[0] + 60 - now

    def record(self) -> None:
        with self._lock:
            self._sent.append(self._clock())


class LogsClient:
    """One HTTP client for one account's logs endpoint."""

    def __init__(
        self,
        base_url: str,
        credentials: Credentials,
        timeout: float,
        on_request: Callable[[str], None] = lambda code: None,
    ) -> None:
        self._credentials = credentials
        self._on_request = on_request
        self._timeout = timeout
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            timeout=timeout,
            headers={
                "Accept": "application/json",
                "Accept-Encoding": "gzip, deflate",
                "User-Agent": f"infobip-voice-exporter/{__version__}",
            },
        )

    def close(self) -> None:
        self._http.close()

    def fetch(self, params: Mapping[str, str | Sequence[str]]) -> bytes:
        """The body of one successful GET of the logs endpoint.

        httpx percent-encodes every query value, so the `+` of an offset travels as `%2B`.
        """
        authorization = self._credentials.header()
        status: int | None = None
        started = time.monotonic()
        try:
            with self._http.stream(
                "GET", LOGS_PATH, params=params, headers={"Authorization": authorization}
            ) as response:
                status = response.status_code
                self._on_request(str(status))
                body = self._read_body(response, started)
        except httpx.TimeoutException as exc:
            if status is None:
                self._on_request("timeout")
            raise ApiError("timeout", f"no whole answer within {self._timeout:g}s") from exc
        except httpx.TransportError as exc:
            if status is None:
                self._on_request("connection_error")
                raise ApiError("connection_error", _transport_detail(exc)) from exc
            raise ApiError("bad_response", f"the answer broke off ({type(exc).__name__})") from exc

        if status == 200:
            return body
        raise _error_from(response, _scrub(f"HTTP {status}: {_said(body)}", authorization))

    def _read_body(self, response: httpx.Response, started: float) -> bytes:
        """The whole body, within the timeout and MAX_BODY, however slowly it trickles.

        Compressed bodies are unpacked here rather than by httpx, a bounded piece at a time,
        so a small gzip answer that unpacks to gigabytes is refused without unpacking it.
        """
        unpack = _decompressor(response.headers.get("Content-Encoding", ""))
        chunks: list[bytes] = []
        size = 0
        for raw in response.iter_raw():
            chunk = raw if unpack is None else unpack.decompress(raw, MAX_BODY + 1 - size)
            size += len(chunk)
            if size > MAX_BODY or (unpack is not None and unpack.unconsumed_tail):
                raise ApiError("bad_response", f"answer larger than {MAX_BODY >> 20} MiB")
            if time.monotonic() - started > self._timeout:
                raise httpx.ReadTimeout("the answer trickled in too slowly")
            chunks.append(chunk)
        if unpack is not None:
            chunks.append(unpack.flush())
        return b"".join(chunks)


def _decompressor(encoding: str) -> Any:
    """A zlib decompressor for the answer's Content-Encoding, or None for a plain body."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return None
    if encoding in ("gzip", "x-gzip"):
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if encoding == "deflate":
        return zlib.decompressobj()
    raise ApiError("bad_response", f"answer in an encoding not asked for: {encoding[:20]}")


def _scrub(text: str, authorization: str) -> str:
    """Cut the credential out of an error text, should the API echo it back."""
    scheme, _, token = authorization.partition(" ")
    secrets = {token}
    if scheme == "Basic":
        pair = base64.b64decode(token).decode("utf-8", "replace")
        secrets |= {pair, pair.partition(":")[2]}
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


def _error_from(response: httpx.Response, detail: str) -> ApiError:
    status = response.status_code
    if status == 401:
        return ApiError("unauthorized", detail, status)
    if status == 403:
        return ApiError("forbidden", detail, status)
    if status == 429:
        return ApiError("rate_limited", detail, status, _retry_after(response))
    if status >= 500:
        return ApiError("server_error", detail, status, _retry_after(response))
    return ApiError("bad_response", detail, status)


def _said(body: bytes) -> str:
    """What an error body says, from either of the API's two shapes, or what it looks like."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        start = body.lstrip()[:1]
        kind = "an HTML page" if start == b"<" else "a body that is not JSON"
        return f"{kind} of {len(body)} bytes"
    if isinstance(document, dict):
        request_error = document.get("requestError")
        if isinstance(request_error, dict):
            exception = request_error.get("serviceException") or request_error.get(
                "policyException"
            )
            if isinstance(exception, dict):
                return f"{exception.get('messageId')}: {exception.get('text')}"
        if "errorCode" in document:
            return f"{document.get('errorCode')}: {document.get('description')}"
    return f"a JSON body of {len(body)} bytes"


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - time.time())


def _transport_detail(exc: httpx.TransportError) -> str:
    # The exception text names the host and the reason, never the Authorization header.
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
