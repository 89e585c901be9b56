"""Turn the bytes of a `/tts/3/logs` answer into typed voice-log records.

The API guarantees no field: any may be absent or null, older accounts send `mccmnc` and
`pricePerMessage`, and timestamps come with or without a colon in the offset and with 0 to 9
fractional digits. A record is kept whenever it has a messageId; everything else it lacks
becomes `None` and the later steps decide what that means.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson

log = logging.getLogger(__name__)

MAX_DURATION = 86_400
"""Seconds: no call lasts a day; a larger value is a defect and would swamp every sum."""

MAX_PRICE_PER_SECOND = 1000
"""Currency units: far above any tariff, far below a value that would swamp the cost."""

PENDING_GROUPS = frozenset({"PENDING", "ACCEPTED"})
"""Status groups that are not final: the message may still change."""

FINAL_GROUPS = ("DELIVERED", "UNDELIVERABLE", "EXPIRED", "REJECTED")
"""The final status groups the API documents; others are final too, under their own name."""

_GROUP_NAMES = {1: "PENDING", 2: "UNDELIVERABLE", 3: "DELIVERED", 4: "EXPIRED", 5: "REJECTED"}

# A page holds a thousand records but only a handful of distinct statuses, errors and prices,
# and its timestamps share their date, time to the second and offset with their neighbours.
# What each distinct value parses to is remembered, keyed by everything the result depends on;
# the parsed objects are frozen, so records may share them. Each table is emptied when it
# reaches _REMEMBERED entries, which bounds memory whatever the API sends.
_REMEMBERED = 4096
_UNSEEN = object()
_statuses: dict[tuple[Any, ...], Status | None] = {}
_errors: dict[tuple[Any, ...], Error] = {}
_prices: dict[tuple[Any, ...], Price | None] = {}
_whole_seconds: dict[str, int] = {}
_MILLIS = {f"{n:03d}": n * 1000 for n in range(1000)}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


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
    as_float: float = field(init=False, compare=False, repr=False)
    """The price as a float, for histogram buckets; computed once, as Prices are shared."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "as_float", float(self.per_second))


@dataclass(slots=True)
class VoiceLog:
    """One message as the logs endpoint describes it, without phone numbers or text.

    Not frozen: a frozen dataclass pays for each field on construction, and a million
    records a minute is the pace this has to keep. Nothing changes a record once built.
    """

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
    if len(value) == 28 and value[19] == ".":
        # The API's own form, `2015-02-23T17:40:31.773+0100`: the instant of the whole second
        # is remembered, and the milliseconds added as datetime.timestamp() would.
        micros = _MILLIS.get(value[20:23])
        if micros is not None:
            whole = value[:19] + value[23:]
            base = _whole_seconds.get(whole)
            if base is None:
                base = _whole_second(whole)
            if base is not None:
                return (base + micros) / 1_000_000
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        # The API always sends an offset; reading a bare time as local would move every
        # latency by the machine's zone, so it is taken as UTC.
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _whole_second(text: str) -> int | None:
    """Microseconds since the epoch of `2015-02-23T17:40:31+0100`, or None for another form.

    None sends the caller to the general parse. So does hour 24, which a Python that reads
    `24:00:00` as the next midnight would still refuse with milliseconds after it.
    """
    if (
        text[4] != "-"
        or text[7] != "-"
        or text[10] != "T"
        or text[13] != ":"
        or text[16] != ":"
        or text[19] not in "+-"
        or text[11:13] == "24"
    ):
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    base = (moment - _EPOCH) // _MICROSECOND
    _remember(_whole_seconds, text, base)
    return base


def _remember(table: dict[Any, Any], key: Any, value: Any) -> None:
    if len(table) >= _REMEMBERED:
        table.clear()
    table[key] = value


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
    size = len(results)
    # Each raw record is let go as soon as it is parsed, while its objects are still in the
    # CPU's cache; freeing the whole document at the end would fetch it all again.
    del document
    results.reverse()
    while results:
        try:
            record, reason = parse_record(results.pop())
        except Exception:  # any defect with one record must spare the rest of the page
            log.debug("record could not be parsed", exc_info=True)
            record, reason = None, "unparsable"
        if record is None:
            invalid[reason] = invalid.get(reason, 0) + 1
        else:
            records.append(record)
    return Page(records, invalid, size)


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

    # Positional: the fields in declaration order, which is measurably faster than keywords.
    return VoiceLog(
        message_id,
        parse_timestamp(raw.get("sentAt")),
        parse_timestamp(raw.get("doneAt")),
        _duration(raw.get("duration")),
        _text(raw.get("mccMnc", raw.get("mccmnc"))),
        _price(raw.get("price")),
        status,
        _error(raw.get("error")),
    ), ""


def _status(raw: Any) -> Status | None:
    if not isinstance(raw, dict):
        return None
    # The result depends on these values alone, and equal values give equal results.
    key = (raw.get("groupName"), raw.get("groupId"), raw.get("name"))
    try:
        status = _statuses.get(key, _UNSEEN)
    except TypeError:  # a list or an object where a name was expected
        return _new_status(*key)
    if status is _UNSEEN:
        status = _new_status(*key)
        _remember(_statuses, key, status)
    return status  # type: ignore[return-value]


def _new_status(group_name: Any, group_id: Any, name: Any) -> Status | None:
    group = _text(group_name)
    if group is None and type(group_id) is int:
        group = _GROUP_NAMES.get(group_id)
    if group is None:
        return None
    return Status(group=group.upper(), name=_text(name) or group.upper())


def _error(raw: Any) -> Error | None:
    if not isinstance(raw, dict):
        return None
    group = raw.get("groupName")
    name = raw.get("name")
    error_id = raw.get("id")
    permanent = raw.get("permanent")
    # With the types in the key, 1, 1.0 and true, which are equal, stay apart.
    key = (group, name, error_id, type(error_id), permanent, type(permanent))
    try:
        error = _errors.get(key)
    except TypeError:
        return _new_error(group, name, error_id, permanent)
    if error is None:
        error = _new_error(group, name, error_id, permanent)
        _remember(_errors, key, error)
    return error


def _new_error(group: Any, name: Any, error_id: Any, permanent: Any) -> Error:
    return Error(
        group=_text(group) or "UNKNOWN",
        name=_text(name) or "UNKNOWN",
        id=error_id if isinstance(error_id, int) and not isinstance(error_id, bool) else None,
        permanent=permanent if isinstance(permanent, bool) else None,
    )


def _price(raw: Any) -> Price | None:
    if not isinstance(raw, dict):
        return None
    amount = raw.get("pricePerSecond", raw.get("pricePerMessage"))
    if amount is None or isinstance(amount, bool):
        return None
    currency = raw.get("currency")
    if amount == 0:
        # 0.0 and -0.0 are equal but give different Decimals: not worth remembering.
        return _new_price(amount, currency)
    key = (amount, type(amount), currency)
    try:
        price = _prices.get(key, _UNSEEN)
    except TypeError:
        return _new_price(amount, currency)
    if price is _UNSEEN:
        price = _new_price(amount, currency)
        _remember(_prices, key, price)
    return price  # type: ignore[return-value]


def _new_price(amount: Any, currency: Any) -> Price | None:
    try:
        # repr() of a float is its shortest exact decimal form, so 0.00787679 stays that.
        per_second = Decimal(repr(amount) if isinstance(amount, float) else str(amount))
    except InvalidOperation:
        return None
    if not per_second.is_finite() or not 0 <= per_second <= MAX_PRICE_PER_SECOND:
        return None
    return Price(per_second=per_second, currency=_text(currency) or "UNKNOWN")


def _duration(raw: Any) -> int | None:
    if isinstance(raw, bool) or not isinstance(raw, (int, float)):
        return None
    if not 0 <= raw <= MAX_DURATION:  # also refuses NaN
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
