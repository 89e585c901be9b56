"""The API client: what it sends, and one typed error for every way a call can fail."""

from __future__ import annotations

import base64
import gzip
import os
import socket
import threading
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest

from exporter.client import ApiError, Credentials, LogsClient, RateLimiter
from tests.conftest import API_KEY, FIXTURES
from tests.fakeapi import Answer, FakeApi


def fetch(api: FakeApi, credentials: Credentials | None = None, timeout: float = 5.0) -> bytes:
    codes: list[str] = []
    client = LogsClient(api.url, credentials or Credentials(api_key=API_KEY), timeout, codes.append)
    try:
        return client.fetch({"sentSince": "2026-12-03T10:00:00.000+0100", "limit": "1000"})
    finally:
        client.close()


def failure(api: FakeApi, **kwargs: object) -> ApiError:
    with pytest.raises(ApiError) as caught:
        fetch(api, **kwargs)  # type: ignore[arg-type]
    return caught.value


def test_the_offset_plus_travels_encoded_and_the_key_as_app_header(fake_api: FakeApi) -> None:
    """A literal + would reach the API as a space; it must go as %2B."""
    fetch(fake_api)

    seen = fake_api.seen[0]
    assert seen.path == "/tts/3/logs?sentSince=2026-12-03T10%3A00%3A00.000%2B0100&limit=1000"
    assert seen.headers["Authorization"] == f"App {API_KEY}"
    assert seen.headers["Accept"] == "application/json"


def test_user_and_password_go_as_basic_auth(fake_api: FakeApi) -> None:
    """Basic base64(user:pass), the API's second scheme."""
    fetch(fake_api, Credentials(username="ann", password="pw"))

    expected = "Basic " + base64.b64encode(b"ann:pw").decode()
    assert fake_api.seen[0].headers["Authorization"] == expected


def test_a_key_file_is_read_again_when_it_changes(fake_api: FakeApi, tmp_path: Path) -> None:
    """A rotated Secret is used at the next call, without a restart."""
    key_file = tmp_path / "key"
    key_file.write_text("first\n")
    credentials = Credentials(api_key_file=key_file)
    fetch(fake_api, credentials)
    key_file.write_text("second\n")
    stat = key_file.stat()
    os.utime(key_file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    fetch(fake_api, credentials)

    assert [s.headers["Authorization"] for s in fake_api.seen] == ["App first", "App second"]


@pytest.mark.parametrize(
    ("answer", "reason", "detail"),
    [
        (
            Answer(
                401,
                b'{"requestError":{"serviceException":{"messageId":"UNAUTHORIZED",'
                b'"text":"Invalid login details"}}}',
            ),
            "unauthorized",
            "HTTP 401: UNAUTHORIZED: Invalid login details",
        ),
        (
            Answer(
                403,
                b'{"requestError":{"serviceException":{"messageId":"FORBIDDEN",'
                b'"text":"Access denied"}}}',
            ),
            "forbidden",
            "HTTP 403: FORBIDDEN: Access denied",
        ),
        (
            Answer(429, b'{"errorCode":"E429","description":"Too many requests","action":"x"}'),
            "rate_limited",
            "HTTP 429: E429: Too many requests",
        ),
        (
            Answer(502, b"<html><body>Bad Gateway</body></html>", {"Content-Type": "text/html"}),
            "server_error",
            "HTTP 502: an HTML page of 37 bytes",
        ),
        (Answer(400, b"nope"), "bad_response", "HTTP 400: a body that is not JSON of 4 bytes"),
        (Answer(503, b"[]"), "server_error", "HTTP 503: a JSON body of 2 bytes"),
    ],
)
def test_each_error_answer_becomes_one_typed_error(
    fake_api: FakeApi, answer: Answer, reason: str, detail: str
) -> None:
    """Either error body shape is quoted; an HTML page is described, not quoted."""
    fake_api.script(answer)

    error = failure(fake_api)

    assert (error.reason, error.detail, error.status) == (reason, detail, answer.status)
    assert API_KEY not in str(error)


@pytest.mark.parametrize(("header", "seconds"), [("7", 7.0), ("0", 0.0), ("soon", None)])
def test_retry_after_is_read_when_present(
    fake_api: FakeApi, header: str, seconds: float | None
) -> None:
    """No Retry-After is documented, but one is honoured when the API sends it."""
    fake_api.script(Answer(429, b"{}", {"Retry-After": header}))

    assert failure(fake_api).retry_after == seconds


def test_no_answer_within_the_timeout_is_a_timeout(fake_api: FakeApi) -> None:
    """The fake holds its answer until released; the client gives up first."""
    release = threading.Event()
    fake_api.script(Answer(hold=release))

    error = failure(fake_api, timeout=0.3)
    release.set()

    assert error.reason == "timeout"


def test_a_refused_connection_is_a_connection_error() -> None:
    """Nothing listens on a port that was just closed."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = LogsClient(f"http://127.0.0.1:{port}", Credentials(api_key=API_KEY), 2.0)

    with pytest.raises(ApiError) as caught:
        client.fetch({})

    assert caught.value.reason == "connection_error"
    assert API_KEY not in str(caught.value)


def test_the_rate_limiter_allows_120_calls_in_any_minute() -> None:
    """The 121st call waits until the first one is a minute old."""
    now = [1000.0]
    limiter = RateLimiter(120, clock=lambda: now[0])
    for _ in range(120):
        assert limiter.wait_time() == 0
        limiter.record()
        now[0] += 0.25

    waits = [limiter.wait_time()]
    now[0] = 1060.0
    waits.append(limiter.wait_time())

    assert waits == [30.0, 0.0]


def test_an_answer_that_trickles_in_times_out_as_a_whole(fake_api: FakeApi) -> None:
    """One byte every 0.2 s never trips a read timeout of 0.5 s, but the whole answer
    must still arrive within it."""
    body = b'{"results": []}' + b" " * 985
    fake_api.script(Answer(body=body, trickle=0.2))

    error = failure(fake_api, timeout=0.5)

    assert (error.reason, error.detail) == ("timeout", "no whole answer within 0.5s")


def test_a_compressed_answer_that_unpacks_past_16_mib_is_refused(fake_api: FakeApi) -> None:
    """A small gzip body that would fill the memory is cut off, not read."""
    bomb = gzip.compress(b'{"results": [' + b" " * (70 << 20) + b"]}", compresslevel=9)
    fake_api.script(Answer(body=bomb, headers={"Content-Encoding": "gzip"}))

    error = failure(fake_api)

    assert (error.reason, error.detail) == ("bad_response", "answer larger than 16 MiB")
    assert len(bomb) < 200_000


def test_an_error_body_that_echoes_the_key_is_scrubbed(fake_api: FakeApi) -> None:
    """Should the API quote the credential back, the log line still holds no secret."""
    echo = b'{"requestError":{"serviceException":{"messageId":"UNAUTHORIZED","text":"bad key App '
    fake_api.script(Answer(401, echo + API_KEY.encode() + b'"}}}'))

    error = failure(fake_api)

    assert error.detail == "HTTP 401: UNAUTHORIZED: bad key App ***"
    assert API_KEY not in str(error)


def test_a_body_cut_off_mid_way_is_a_bad_response(fake_api: FakeApi) -> None:
    """The length promised more than came: the answer broke off."""
    fake_api.script(Answer(body=b'{"results": [', headers={"Content-Length": "500"}))

    error = failure(fake_api)

    assert error.reason == "bad_response"
    assert error.detail.startswith("the answer broke off")


@pytest.mark.parametrize(
    ("encoding", "pack"),
    [("gzip", gzip.compress), ("deflate", zlib.compress), ("identity", lambda b: b)],
)
def test_a_compressed_answer_is_unpacked(
    fake_api: FakeApi, encoding: str, pack: Callable[[bytes], bytes]
) -> None:
    """gzip and deflate, as the client asks for them, come back as the plain body."""
    body = (FIXTURES / "doc_example_two_records.json").read_bytes()
    fake_api.script(Answer(body=pack(body), headers={"Content-Encoding": encoding}))

    assert fetch(fake_api) == body
    assert fake_api.seen[0].headers["Accept-Encoding"] == "gzip, deflate"
