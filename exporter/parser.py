"""Turn the bytes of a `/tts/3/logs` answer into typed voice-log records.

The API guarantees no field: any may be absent or null, older accounts send `mccmnc` and
`pricePerMessage`, and timestamps come with or without a colon in the offset and with 0 to 9
fractional digits. A record is kept whenever it has a messageId; everything else it lacks
becomes `None` and the later steps decide what that means.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson

PENDING_GROUPS = frozenset({"PENDING", "ACCEPTED"})
"""Status groups that are not final: the message may still change."""

FINAL_GROUPS = ("DELIVERED", "UNDELIVERABLE", "EXPIRED", "REJECTED")
"""The final status groups the API documents; others are final too, under their own name."""

_GROUP_NAMES = {1: "PENDING", 2: "UNDELIVERABLE", 3: "DELIVERED", 4: "EXPIRED", 5: "REJECTED"}


class BadResponseError(ValueError):
    """The body is not a logs answer: not JSON, or JSON of another shape."""


@dataclass(frozen=True, slots=True)
class Status:
    group: str
    name: str

    @property
    def final(self) -> bool:
        return self.group not in PENDING_GROUPS


@dataclass(frozen=True, slots=True)
class Error:
    group: str
    name: str
    id: int | None
    permanent: bool | None


@dataclass(frozen=True, slots=True)
class Price:
    per_second: Decimal
    currency: str


@dataclass(frozen=True, slots=True)
class VoiceLog:
    """One message as the logs endpoint describes it, without phone numbers or text."""

    message_id: str
    sent_at: float | None
    done_at: float | None
    duration: int | None
    mcc_mnc: str | None
    price: Price | None
    status: Status
    error: Error | None


@dataclass(slots=True)
class Page:
    """One parsed answer: the usable records, and why the others were skipped."""

    records: list[VoiceLog]
    invalid: dict[str, int]
    size: int


def parse_timestamp(value: object) -> float | None:
    """Seconds since the epoch for any timestamp form the API uses, or None.

    Handles `+0100`, `+01:00`, `Z` and 0 to 9 fractional digits (beyond 6 are cut).

    >>> parse_timestamp("2015-02-23T17:40:31.773+0100")
    1424709631.773
    """
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        # The API always sends an offset; reading a bare time as local would move every
        # latency by the machine's zone, so it is taken as UTC.
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def format_timestamp(seconds: float) -> str:
    """A query timestamp in the API's format, in UTC: `2026-12-03T15:42:51.123+0000`."""
    moment = datetime.fromtimestamp(seconds, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"


def parse_page(body: bytes) -> Page:
    """Parse a whole answer; raise BadResponseError when it is not a logs answer at all."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadResponseError(f"body is not JSON: {_describe(body)}") from exc
    if not isinstance(document, dict):
        raise BadResponseError("body is not a JSON object")
    results = document.get("results")
    if results is None:
        results = []
    if not isinstance(results, list):
        raise BadResponseError("results is not a list")

    records: list[VoiceLog] = []
    invalid: dict[str, int] = {}
    for raw in results:
        record, reason = parse_record(raw)
        if record is None:
            invalid[reason] = invalid.get(reason, 0) + 1
        else:
            records.append(record)
    return Page(records, invalid, len(results))


def parse_record(raw: Any) -> tuple[VoiceLog | None, str]:
    """One record, or None with the reason it cannot be used."""
    if not isinstance(raw, dict):
        return None, "not_an_object"
    message_id = raw.get("messageId")
    if not isinstance(message_id, str) or not message_id:
        return None, "no_message_id"
    status = _status(raw.get("status"))
    if status is None:
        return None, "no_status"

    return VoiceLog(
        message_id=message_id,
        sent_at=parse_timestamp(raw.get("sentAt")),
        done_at=parse_timestamp(raw.get("doneAt")),
        duration=_duration(raw.get("duration")),
        mcc_mnc=_text(raw.get("mccMnc", raw.get("mccmnc"))),
        price=_price(raw.get("price")),
        status=status,
        error=_error(raw.get("error")),
    ), ""


def _status(raw: Any) -> Status | None:
    if not isinstance(raw, dict):
        return None
    group = _text(raw.get("groupName"))
    if group is None:
        group = _GROUP_NAMES.get(raw.get("groupId"))  # type: ignore[arg-type]
    if group is None:
        return None
    return Status(group=group.upper(), name=_text(raw.get("name")) or group.upper())


def _error(raw: Any) -> Error | None:
    if not isinstance(raw, dict):
        return None
    error_id = raw.get("id")
    permanent = raw.get("permanent")
    return Error(
        group=_text(raw.get("groupName")) or "UNKNOWN",
        name=_text(raw.get("name")) or "UNKNOWN",
        id=error_id if isinstance(error_id, int) and not isinstance(error_id, bool) else None,
        permanent=permanent if isinstance(permanent, bool) else None,
    )


def _price(raw: Any) -> Price | None:
    if not isinstance(raw, dict):
        return None
    amount = raw.get("pricePerSecond", raw.get("pricePerMessage"))
    if amount is None or isinstance(amount, bool):
        return None
    try:
        # repr() of a float is its shortest exact decimal form, so 0.00787679 stays that.
        per_second = Decimal(repr(amount) if isinstance(amount, float) else str(amount))
    except InvalidOperation:
        return None
    if not per_second.is_finite() or per_second < 0:
        return None
    return Price(per_second=per_second, currency=_text(raw.get("currency")) or "UNKNOWN")


def _duration(raw: Any) -> int | None:
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        return None
    if raw < 0 or raw != raw:
        return None
    return int(raw)


def _text(raw: Any) -> str | None:
    if isinstance(raw, str) and raw.strip():
        return raw.strip()
    return None


def _describe(body: bytes) -> str:
    # Never quote the body itself: a cut-off logs answer holds phone numbers and texts.
    start = body.lstrip()[:1]
    if start == b"<":
        return f"an HTML or XML page of {len(body)} bytes"
    return f"{len(body)} bytes" if body else "empty"
