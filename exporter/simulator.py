"""A stand-in for Infobip's `GET /tts/3/logs`, served over real HTTP on loopback.

It generates voice traffic at a steady rate with a realistic mix (every final status group,
old 5xxx and new 10xxx error ids, durations, per-second prices in two currencies, several
networks, calls that stay PENDING for a while), answers with the API's auth check, filters,
newest-first order, `limit`, 48-hour retention and 120-requests-a-minute limit, and keeps the
ground truth so that tests can compare an exporter's totals with it. Faults can be scripted:
429s with or without Retry-After, 5xx, slow answers, HTML and cut-off bodies, late records,
bursts and many records sharing one timestamp.

Run alone: `python -m exporter.simulator --port 9878`.
"""

from __future__ import annotations

import argparse
import base64
import random
import threading
import time
import uuid
from bisect import bisect_left, bisect_right
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson

from exporter.parser import parse_timestamp

RETENTION = 48 * 3600.0
RATE_LIMIT = 120

# (weight, status group id, group, status id, status name, error group, error id, error name,
#  permanent)
OUTCOMES = (
    (60, 3, "DELIVERED", 5, "DELIVERED_TO_HANDSET", "OK", 0, "NO_ERROR", False),
    (6, 3, "DELIVERED", 5, "DELIVERED_TO_HANDSET", "OK", 10000, "NORMAL_HANGUP", False),
    (
        8,
        2,
        "UNDELIVERABLE",
        9,
        "UNDELIVERABLE_NOT_DELIVERED",
        "HANDSET_ERRORS",
        10200,
        "NO_ANSWER",
        False,
    ),
    (
        5,
        2,
        "UNDELIVERABLE",
        9,
        "UNDELIVERABLE_NOT_DELIVERED",
        "HANDSET_ERRORS",
        10201,
        "BUSY",
        False,
    ),
    (
        4,
        2,
        "UNDELIVERABLE",
        4,
        "UNDELIVERABLE_REJECTED_OPERATOR",
        "HANDSET_ERRORS",
        5003,
        "EC_VOICE_NO_ANSWER",
        False,
    ),
    (
        3,
        4,
        "EXPIRED",
        15,
        "EXPIRED_EXPIRED",
        "OPERATOR_ERRORS",
        5001,
        "EC_VOICE_ERROR_TIMEOUT",
        False,
    ),
    (
        2,
        4,
        "EXPIRED",
        29,
        "EXPIRED_DLR_UNKNOWN",
        "OPERATOR_ERRORS",
        10002,
        "REQUEST_TIMEOUT",
        False,
    ),
    (
        3,
        5,
        "REJECTED",
        12,
        "REJECTED_NOT_ENOUGH_CREDITS",
        "USER_ERRORS",
        10301,
        "INSUFFICIENT_FUNDS",
        True,
    ),
    (
        2,
        5,
        "REJECTED",
        6,
        "REJECTED_NETWORK",
        "OPERATOR_ERRORS",
        5008,
        "EC_VOICE_NETWORK_ERROR",
        True,
    ),
)
PRICES = (("EUR", "0.00787679"), ("EUR", "0.0125"), ("USD", "0.0105"), ("USD", "0.004"))
NETWORKS = ("22801", "26201", "23410", "310260", "20810")
SENDER = "41793026700"
PENDING_STATUS = {
    "groupId": 1,
    "groupName": "PENDING",
    "id": 7,
    "name": "PENDING_ENROUTE",
    "description": "Message sent to next instance",
}
NO_ERROR = {
    "groupId": 0,
    "groupName": "OK",
    "id": 0,
    "name": "NO_ERROR",
    "description": "No Error",
    "permanent": False,
}


@dataclass
class Message:
    message_id: str
    bulk_id: str
    sent_at: float
    final_at: float
    visible_at: float
    duration: int
    network: str
    currency: str
    price: str
    outcome: tuple[Any, ...]

    def is_final(self, now: float) -> bool:
        return now >= self.final_at

    @property
    def to(self) -> str:
        """A made-up Swiss mobile number, different for each message."""
        return "4179" + str(int(self.sent_at * 1000))[-7:]


@dataclass
class Fault:
    """Answers for `count` requests after `skip` normal ones: `status` (with an optional
    Retry-After), `html`, `truncated` or `slow` (a normal answer after `delay` seconds)."""

    kind: str
    count: int = 1
    skip: int = 0
    status: int = 500
    retry_after: str | None = None
    delay: float = 0.0


class Simulator:
    """The simulated account: its messages, its clock, its faults and its ground truth."""

    def __init__(
        self,
        rate: float = 2.0,
        api_key: str = "demo-key",
        username: str | None = None,
        password: str | None = None,
        pending_seconds: tuple[float, float] = (2.0, 20.0),
        backfill: float = 0.0,
        seed: int | None = None,
        utc_offset_minutes: int = 60,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.rate = rate
        self.api_key = api_key
        self.username = username
        self.password = password
        self.pending_seconds = pending_seconds
        self.clock = clock
        self.zone = timezone(timedelta(minutes=utc_offset_minutes))
        self.random = random.Random(seed)
        self.lock = threading.Lock()
        self.messages: list[Message] = []
        self.keys: list[float] = []
        self.faults: deque[Fault] = deque()
        self.requests: list[dict[str, list[str]]] = []
        self.rate_window: deque[float] = deque()
        self.paused = False
        now = clock()
        self._generated_until = now
        if backfill:
            self._generated_until = now - backfill
            self._generate(now)
        self.server: ThreadingHTTPServer | None = None
        self.url = ""

    # Traffic

    def _generate(self, now: float) -> None:
        if self.paused or self.rate <= 0:
            self._generated_until = now
            return
        step = 1.0 / self.rate
        moment = self._generated_until + step
        while moment <= now:
            self._add(self._new_message(moment))
            moment += step
        self._generated_until = moment - step

    def _new_message(self, sent_at: float, outcome: tuple[Any, ...] | None = None) -> Message:
        rnd = self.random
        outcome = outcome or rnd.choices(OUTCOMES, weights=[o[0] for o in OUTCOMES])[0]
        currency, price = rnd.choice(PRICES)
        delivered = outcome[2] == "DELIVERED"
        return Message(
            message_id=str(uuid.UUID(int=rnd.getrandbits(128), version=4)),
            bulk_id=str(uuid.UUID(int=rnd.getrandbits(128), version=4)),
            sent_at=round(sent_at, 3),
            final_at=round(sent_at + rnd.uniform(*self.pending_seconds), 3),
            visible_at=sent_at,
            duration=rnd.randint(3, 240) if delivered else 0,
            network=rnd.choice(NETWORKS),
            currency=currency,
            price=price,
            outcome=outcome,
        )

    def _add(self, message: Message) -> None:
        index = bisect_right(self.keys, message.sent_at)
        self.keys.insert(index, message.sent_at)
        self.messages.insert(index, message)

    def add_burst(self, count: int, same_timestamp: bool = False, age: float = 0.0) -> None:
        """`count` messages sent just now (or `age` seconds ago), final at once."""
        with self.lock:
            now = self.clock()
            for i in range(count):
                sent = now - age if same_timestamp else now - age - (count - i) * 0.001
                message = self._new_message(sent)
                message.final_at = message.sent_at
                self._add(message)

    def add_late(self, count: int, age: float) -> None:
        """`count` final messages sent `age` seconds ago that only now become visible."""
        with self.lock:
            now = self.clock()
            for i in range(count):
                message = self._new_message(now - age + i * 0.01)
                message.final_at = message.sent_at
                message.visible_at = now
                self._add(message)

    def pause(self) -> None:
        """Stop generating traffic and let every pending call turn final at once."""
        with self.lock:
            now = self.clock()
            self._generate(now)
            self.paused = True
            for message in self.messages:
                message.final_at = min(message.final_at, now)

    def inject(self, *faults: Fault) -> None:
        with self.lock:
            self.faults.extend(faults)

    # Ground truth

    def truth(self) -> dict[str, Any]:
        """Final messages by (group, status), errors, cost per currency, and pending count."""
        with self.lock:
            now = self.clock()
            self._generate(now)
            messages: Counter[tuple[str, str]] = Counter()
            errors: Counter[tuple[str, str]] = Counter()
            cost: dict[str, Decimal] = {}
            pending = 0
            for m in self._retained(now):
                if not m.is_final(now):
                    pending += 1
                    continue
                messages[(m.outcome[2], m.outcome[4])] += 1
                if m.outcome[6] != 0:
                    errors[(m.outcome[5], m.outcome[7])] += 1
                cost[m.currency] = cost.get(m.currency, Decimal(0)) + Decimal(m.price) * m.duration
            return {
                "messages": dict(messages),
                "errors": dict(errors),
                "cost": cost,
                "pending": pending,
                "total": sum(messages.values()),
            }

    def _retained(self, now: float) -> list[Message]:
        start = bisect_left(self.keys, now - RETENTION)
        return [m for m in self.messages[start:] if m.visible_at <= now]

    # The endpoint

    def answer(self, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        """Status, headers and body for one GET, as the real API would give them."""
        url = urlsplit(path)
        if url.path.rstrip("/") != "/tts/3/logs":
            return 404, {}, _request_error("NOT_FOUND", "Resource not found")
        with self.lock:
            query = parse_qs(url.query, keep_blank_values=True)
            self.requests.append(query)
            if not self._authorized(headers.get("authorization", "")):
                return 401, {}, _request_error("UNAUTHORIZED", "Invalid login details")
            fault = self._next_fault()
            if fault is None and not self._within_rate():
                body = {
                    "errorCode": "E429",
                    "description": "Too many requests",
                    "action": "Reduce the request rate",
                }
                return 429, {}, orjson.dumps(body)
        if fault is not None and fault.kind != "slow":
            return _fault_answer(fault)
        if fault is not None:
            time.sleep(fault.delay)
        with self.lock:
            return self._logs(query)

    def _authorized(self, header: str) -> bool:
        scheme, _, value = header.partition(" ")
        if scheme == "App":
            return value == self.api_key
        if scheme == "Basic" and self.username is not None:
            try:
                user, _, password = base64.b64decode(value).decode().partition(":")
            except ValueError:
                return False
            return (user, password) == (self.username, self.password)
        return False

    def _next_fault(self) -> Fault | None:
        if not self.faults:
            return None
        fault = self.faults[0]
        if fault.skip > 0:
            fault.skip -= 1
            return None
        fault.count -= 1
        if fault.count <= 0:
            self.faults.popleft()
        return fault

    def _within_rate(self) -> bool:
        now = self.clock()
        while self.rate_window and self.rate_window[0] <= now - 60:
            self.rate_window.popleft()
        if len(self.rate_window) >= RATE_LIMIT:
            return False
        self.rate_window.append(now)
        return True

    def _logs(self, query: dict[str, list[str]]) -> tuple[int, dict[str, str], bytes]:
        now = self.clock()
        self._generate(now)
        try:
            since = _bound(query, "sentSince", now - RETENTION)
            until = _bound(query, "sentUntil", now)
            limit = int(query.get("limit", ["50"])[0])
        except ValueError as exc:
            return 400, {}, _request_error("BAD_REQUEST", str(exc))
        wanted = _Filters(query)
        start = bisect_left(self.keys, max(since, now - RETENTION))
        stop = bisect_right(self.keys, until)
        results: list[dict[str, Any]] = []
        for message in reversed(self.messages[start:stop]):
            if len(results) >= limit:
                break
            if message.visible_at <= now and wanted.match(message, now):
                results.append(self._render(message, now))
        return 200, {}, orjson.dumps({"results": results})

    def _render(self, m: Message, now: float) -> dict[str, Any]:
        final = m.is_final(now)
        o = m.outcome
        status = (
            {
                "groupId": o[1],
                "groupName": o[2],
                "id": o[3],
                "name": o[4],
                "description": o[4].replace("_", " ").capitalize(),
            }
            if final
            else PENDING_STATUS
        )
        error = (
            {
                "groupId": ["OK", "HANDSET_ERRORS", "USER_ERRORS", "OPERATOR_ERRORS"].index(o[5]),
                "groupName": o[5],
                "id": o[6],
                "name": o[7],
                "description": o[7].lower(),
                "permanent": o[8],
            }
            if final
            else NO_ERROR
        )
        return {
            "bulkId": m.bulk_id,
            "messageId": m.message_id,
            "to": m.to,
            "from": SENDER,
            "text": "Your appointment is tomorrow at 10.",
            "sentAt": self._stamp(m.sent_at),
            "doneAt": self._stamp(m.final_at) if final else None,
            "duration": m.duration if final else 0,
            "mccMnc": m.network,
            "price": {"pricePerSecond": float(m.price), "currency": m.currency},
            "status": status,
            "error": error,
        }

    def _stamp(self, seconds: float) -> str:
        moment = datetime.fromtimestamp(seconds, self.zone)
        return (
            moment.strftime("%Y-%m-%dT%H:%M:%S.")
            + f"{moment.microsecond // 1000:03d}"
            + (moment.strftime("%z"))
        )

    # Serving

    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve in a background thread; return the base URL."""
        simulator = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body leave in two writes; without this, delayed ACKs add 40 ms.
            disable_nagle_algorithm = True

            def do_GET(self) -> None:
                headers = {k.lower(): v for k, v in self.headers.items()}
                status, extra, body = simulator.answer(self.path, headers)
                self.send_response(status)
                content_type = extra.pop("Content-Type", "application/json")
                self.send_header("Content-Type", content_type)
                for key, value in extra.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = _QuietServer((host, port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()
        self.url = f"http://{host}:{self.server.server_address[1]}"
        return self.url

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up (a timeout test, a stopped exporter) is no news."""


class _Filters:
    def __init__(self, query: dict[str, list[str]]) -> None:
        self.message_ids = set(query.get("messageId", []))
        self.bulk_ids = set(query.get("bulkId", []))
        self.status = query.get("generalStatus", [None])[0]
        self.mcc = query.get("mcc", [None])[0]
        self.mnc = query.get("mnc", [None])[0]
        self.to = query.get("to", [None])[0]
        self.sender = query.get("from", [None])[0]

    def match(self, m: Message, now: float) -> bool:
        if self.message_ids and m.message_id not in self.message_ids:
            return False
        if self.bulk_ids and m.bulk_id not in self.bulk_ids:
            return False
        if self.status is not None:
            group = m.outcome[2] if m.is_final(now) else "PENDING"
            if group != self.status:
                return False
        if self.to is not None and m.to != self.to:
            return False
        if self.sender is not None and self.sender != SENDER:
            return False
        if self.mcc is not None and not m.network.startswith(self.mcc):
            return False
        return self.mnc is None or m.network[3:] == self.mnc


def _bound(query: dict[str, list[str]], name: str, default: float) -> float:
    values = query.get(name)
    if not values:
        return default
    moment = parse_timestamp(values[0])
    if moment is None:
        raise ValueError(f"Invalid {name}: {values[0]!r}")
    return moment


def _request_error(message_id: str, text: str) -> bytes:
    return orjson.dumps(
        {"requestError": {"serviceException": {"messageId": message_id, "text": text}}}
    )


def _fault_answer(fault: Fault) -> tuple[int, dict[str, str], bytes]:
    if fault.kind == "html":
        page = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
        return 200, {"Content-Type": "text/html"}, page
    if fault.kind == "truncated":
        return 200, {}, b'{"results":[{"bulkId":"06479ba3","messageId":"1f21d8d7-f3'
    headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
    body = {"errorCode": f"E{fault.status}", "description": "Injected failure", "action": ""}
    return fault.status, headers, orjson.dumps(body)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m exporter.simulator",
        description="Serve a simulated Infobip voice logs API.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9878)
    parser.add_argument("--rate", type=float, default=2.0, help="messages a second")
    parser.add_argument("--api-key", default="demo-key")
    parser.add_argument("--backfill", type=float, default=600.0, help="seconds of history")
    args = parser.parse_args(argv)
    simulator = Simulator(rate=args.rate, api_key=args.api_key, backfill=args.backfill)
    url = simulator.start(args.host, args.port)
    print(f"simulator serving {url}/tts/3/logs with api key {args.api_key!r}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        simulator.stop()


if __name__ == "__main__":
    main()
