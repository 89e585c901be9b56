"""The parser turns the API's bytes into typed records, whatever shape each record has."""

from __future__ import annotations

from decimal import Decimal

import orjson
import pytest

from exporter.parser import (
    BadResponseError,
    Error,
    Price,
    Status,
    VoiceLog,
    format_timestamp,
    parse_page,
    parse_timestamp,
)
from tests.conftest import FIXTURES


def test_the_documentation_example_becomes_one_typed_record() -> None:
    """Every field of the documented example lands in the record, without number or text."""
    body = (FIXTURES / "doc_example_one_record.json").read_bytes()

    page = parse_page(body)

    assert page.size == 1
    assert page.invalid == {}
    assert page.records == [
        VoiceLog(
            message_id="1f21d8d7-f306-4f53-9f6e-eddfce9849ea",
            sent_at=1424709631.773,
            done_at=1424709631.787,
            duration=10,
            mcc_mnc="22801",
            price=Price(per_second=Decimal("0.01"), currency="EUR"),
            status=Status(group="DELIVERED", name="DELIVERED_TO_HANDSET"),
            error=Error(group="OK", name="EC_VOICE_NO_ANSWER", id=5003, permanent=True),
        )
    ]


def test_the_two_record_example_keeps_the_api_order() -> None:
    """The second documented answer holds two messages, newest first."""
    body = (FIXTURES / "doc_example_two_records.json").read_bytes()

    page = parse_page(body)

    assert [r.message_id for r in page.records] == [
        "07e03aae-fabc-44ad-b1ce-222e14094d70",
        "1f21d8d7-f306-4f53-9f6e-eddfce9849ea",
    ]
    assert [r.sent_at for r in page.records] == [1424709671.833, 1424709631.773]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2015-02-23T17:40:31.773+0100", 1424709631.773),
        ("2015-02-23T16:40:31.773+0000", 1424709631.773),
        ("2015-02-23T17:40:31.773+01:00", 1424709631.773),
        ("2015-02-23T16:40:31.773Z", 1424709631.773),
        ("2015-02-23T16:40:31Z", 1424709631.0),
        ("2015-02-23T16:40:31.7Z", 1424709631.7),
        ("2015-02-23T16:40:31.123456789Z", 1424709631.123456),
        ("2015-02-23T11:10:31.5-0530", 1424709631.5),
        ("2015-02-23T16:40:31", 1424709631.0),
    ],
)
def test_every_timestamp_form_gives_the_same_instant(text: str, expected: float) -> None:
    """Offsets with or without a colon, Z, and 0 to 9 fractional digits all parse."""
    assert parse_timestamp(text) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("text", ["", "yesterday", "2015-02-30T10:00:00Z", "17:40", None, 5])
def test_a_strange_timestamp_is_none_not_an_exception(text: object) -> None:
    """Anything that is not a date-time gives None."""
    assert parse_timestamp(text) is None


def test_query_timestamps_are_utc_with_milliseconds() -> None:
    """The format the API documents for sentSince and sentUntil."""
    assert format_timestamp(1424709631.773) == "2015-02-23T16:40:31.773+0000"


def test_older_field_names_are_read_too() -> None:
    """`mccmnc` and `pricePerMessage` from older docs mean the same as the new names."""
    body = orjson.dumps(
        {
            "results": [
                {
                    "messageId": "m-1",
                    "mccmnc": "26201",
                    "price": {"pricePerMessage": 0.0125, "currency": "USD"},
                    "status": {"groupId": 3, "groupName": "DELIVERED", "name": "DELIVERED"},
                }
            ]
        }
    )

    record = parse_page(body).records[0]

    assert record.mcc_mnc == "26201"
    assert record.price == Price(per_second=Decimal("0.0125"), currency="USD")


def test_a_record_of_nulls_keeps_its_message_id_and_status() -> None:
    """Every optional field may be absent or null; the record still counts."""
    body = orjson.dumps(
        {
            "results": [
                {
                    "messageId": "m-2",
                    "sentAt": None,
                    "doneAt": None,
                    "duration": None,
                    "mccMnc": None,
                    "price": None,
                    "error": None,
                    "status": {"groupId": 5, "groupName": None, "name": None},
                }
            ]
        }
    )

    record = parse_page(body).records[0]

    assert record == VoiceLog(
        message_id="m-2",
        sent_at=None,
        done_at=None,
        duration=None,
        mcc_mnc=None,
        price=None,
        status=Status(group="REJECTED", name="REJECTED"),
        error=None,
    )


def test_records_without_message_id_or_status_are_skipped_and_counted() -> None:
    """The unusable records are counted by reason; the valid ones around them remain."""
    good = {"messageId": "m-3", "status": {"groupName": "EXPIRED", "name": "EXPIRED_EXPIRED"}}
    body = orjson.dumps(
        {
            "results": [
                {"messageId": None, "status": good["status"]},
                good,
                {"status": good["status"]},
                {"messageId": "m-4"},
                "not a record",
            ]
        }
    )

    page = parse_page(body)

    assert [r.message_id for r in page.records] == ["m-3"]
    assert page.invalid == {"no_message_id": 2, "no_status": 1, "not_an_object": 1}
    assert page.size == 5


def test_an_unknown_status_group_is_kept_under_its_own_name() -> None:
    """A group the exporter does not know is final unless it is PENDING or ACCEPTED."""
    body = orjson.dumps(
        {
            "results": [
                {"messageId": "a", "status": {"groupName": "CANCELLED", "name": "CANCELLED_X"}},
                {"messageId": "b", "status": {"groupName": "ACCEPTED", "name": "ACCEPTED"}},
            ]
        }
    )

    statuses = [r.status for r in parse_page(body).records]

    assert [(s.group, s.final) for s in statuses] == [("CANCELLED", True), ("ACCEPTED", False)]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"<html><body>502 Bad Gateway</body></html>", "body is not JSON: an HTML or XML page"),
        (b'{"results":[{"to":"41793026727","messageId":"x', "body is not JSON: 46 bytes"),
        (b"", "body is not JSON: empty"),
        (b"[1, 2]", "body is not a JSON object"),
        (b'{"results": {"a": 1}}', "results is not a list"),
    ],
)
def test_a_body_that_is_not_a_logs_answer_is_one_clear_error(body: bytes, message: str) -> None:
    """The error says what was wrong, and never quotes the body (it may hold numbers)."""
    with pytest.raises(BadResponseError) as caught:
        parse_page(body)

    assert str(caught.value).startswith(message)
    assert "41793026727" not in str(caught.value)


def test_an_answer_without_results_is_an_empty_page() -> None:
    """`{}` or `{"results": null}` means no logs matched."""
    assert parse_page(b'{"results": null}').records == []
    assert parse_page(b"{}").size == 0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("duration", 1e30),
        ("duration", 86_401),
        ("duration", -5),
        ("duration", "30"),
        ("price", {"pricePerSecond": 1e300, "currency": "EUR"}),
        ("price", {"pricePerSecond": -0.01, "currency": "EUR"}),
        ("price", {"pricePerSecond": "abc", "currency": "EUR"}),
    ],
)
def test_an_impossible_value_drops_that_field_and_keeps_the_message(
    field: str, value: object
) -> None:
    """A call of 1e30 seconds would swamp every sum for good; the message still counts."""
    raw = {"messageId": "m-9", "status": {"groupName": "DELIVERED"}, field: value}

    record = parse_page(orjson.dumps({"results": [raw]})).records[0]

    assert (record.message_id, record.duration, record.price) == ("m-9", None, None)


def test_a_status_whose_group_id_is_a_list_is_skipped_not_a_crash() -> None:
    """An unhashable groupId without a groupName: that record is unusable, the rest count."""
    body = orjson.dumps(
        {
            "results": [
                {"messageId": "bad", "status": {"groupId": [], "name": "X"}},
                {"messageId": "good", "status": {"groupId": 3, "name": "DELIVERED_TO_HANDSET"}},
            ]
        }
    )

    page = parse_page(body)

    assert [r.message_id for r in page.records] == ["good"]
    assert page.invalid == {"no_status": 1}
