"""The simulator answers like the logs endpoint the contract describes."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import orjson
import pytest

from exporter.parser import parse_timestamp
from exporter.simulator import Simulator
from tests.conftest import API_KEY


def get(sim: Simulator, headers: dict[str, str] | None = None, **params: object) -> httpx.Response:
    auth = {"Authorization": f"App {API_KEY}"}
    query: Any = params
    return httpx.get(f"{sim.url}/tts/3/logs", params=query, headers=headers or auth)


def results(response: httpx.Response) -> list[dict[str, object]]:
    assert response.status_code == 200
    return orjson.loads(response.content)["results"]  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    "header", ["App wrong", "", "Bearer x", "Basic " + base64.b64encode(b"u:p").decode()]
)
def test_a_bad_credential_gets_401_with_the_api_error_body(
    simulator: Simulator, header: str
) -> None:
    """The requestError/serviceException shape the real API uses."""
    response = get(simulator, {"Authorization": header} if header else {"X": "y"})

    assert response.status_code == 401
    assert orjson.loads(response.content) == {
        "requestError": {
            "serviceException": {"messageId": "UNAUTHORIZED", "text": "Invalid login details"}
        }
    }


def test_basic_auth_is_accepted_when_the_account_has_a_user() -> None:
    """Username and password, the API's second scheme."""
    sim = Simulator(rate=0, api_key=API_KEY, username="ann", password="pw")
    sim.start()
    try:
        header = "Basic " + base64.b64encode(b"ann:pw").decode()
        response = get(sim, {"Authorization": header})
    finally:
        sim.stop()

    assert response.status_code == 200


def test_answers_are_newest_first_and_limited(simulator: Simulator) -> None:
    """`limit` caps the answer; the default is 50."""
    simulator.add_burst(120)

    default = results(get(simulator))
    three = results(get(simulator, limit=3))

    assert len(default) == 50
    sent = [parse_timestamp(r["sentAt"]) for r in three]
    assert sent == sorted(sent, reverse=True)
    assert [r["messageId"] for r in three] == [r["messageId"] for r in default[:3]]


def test_every_filter_narrows_the_answer(simulator: Simulator) -> None:
    """messageId and bulkId repeat; the others take one value."""
    simulator.add_burst(200)
    every = results(get(simulator, limit=1000))
    first, second = every[0], every[1]
    group = first["status"]["groupName"]  # type: ignore[index]
    network = str(first["mccMnc"])

    checks = {
        "messageId": results(get(simulator, messageId=[first["messageId"], second["messageId"]])),
        "bulkId": results(get(simulator, bulkId=first["bulkId"])),
        "to": results(get(simulator, to=first["to"])),
        "from": results(get(simulator, **{"from": "41793026700", "limit": 1000})),
        "other-from": results(get(simulator, **{"from": "1234"})),
        "generalStatus": results(get(simulator, generalStatus=group, limit=1000)),
        "mcc+mnc": results(get(simulator, mcc=network[:3], mnc=network[3:], limit=1000)),
    }

    assert [r["messageId"] for r in checks["messageId"]] == [
        first["messageId"],
        second["messageId"],
    ]
    assert [r["messageId"] for r in checks["bulkId"]] == [first["messageId"]]
    assert first["messageId"] in [r["messageId"] for r in checks["to"]]
    assert (len(checks["from"]), len(checks["other-from"])) == (200, 0)
    expected_group = [r for r in every if r["status"]["groupName"] == group]  # type: ignore[index]
    assert len(checks["generalStatus"]) == len(expected_group)
    assert {r["mccMnc"] for r in checks["mcc+mnc"]} == {network}


def test_sent_since_and_until_bound_the_answer_inclusively(simulator: Simulator) -> None:
    """Both bounds in the API's format, with an offset whose + is sent as %2B."""
    simulator.add_burst(10)
    every = results(get(simulator))
    newest, oldest = every[0]["sentAt"], every[-1]["sentAt"]

    inside = results(get(simulator, sentSince=oldest, sentUntil=newest))
    after = results(get(simulator, sentSince=every[4]["sentAt"]))
    bad = get(simulator, sentSince="2026-12-03T10:00:00.000 0100")

    assert len(inside) == 10
    assert len(after) == 5
    assert bad.status_code == 400


def test_logs_older_than_48_hours_are_gone() -> None:
    """Retention: a message sent 48 hours and a second ago is not returned."""
    now = [2_000_000_000.0]
    sim = Simulator(rate=0, api_key=API_KEY, clock=lambda: now[0])
    sim.start()
    try:
        sim.add_burst(5)
        now[0] += 48 * 3600 - 1
        kept = results(get(sim))
        now[0] += 2
        gone = results(get(sim))
    finally:
        sim.stop()

    assert (len(kept), len(gone)) == (5, 0)


def test_the_121st_request_in_a_minute_gets_429() -> None:
    """120 requests a minute on the logs endpoint, then the E429 body."""
    now = [2_000_000_000.0]
    sim = Simulator(rate=0, api_key=API_KEY, clock=lambda: now[0])
    sim.start()
    try:
        with httpx.Client(headers={"Authorization": f"App {API_KEY}"}) as client:
            codes = [client.get(f"{sim.url}/tts/3/logs").status_code for _ in range(121)]
            now[0] += 60
            later = client.get(f"{sim.url}/tts/3/logs")
    finally:
        sim.stop()

    assert codes.count(200) == 120
    assert codes[-1] == 429
    assert later.status_code == 200


def test_calls_stay_pending_for_a_while_then_turn_final() -> None:
    """A pending call shows PENDING and no doneAt; later, its final status."""
    now = [2_000_000_000.0]
    sim = Simulator(
        rate=1, api_key=API_KEY, seed=2, pending_seconds=(10.0, 10.0), clock=lambda: now[0]
    )
    sim.start()
    try:
        now[0] += 1
        early = results(get(sim))
        now[0] += 10
        late = results(get(sim))
    finally:
        sim.stop()

    seen: Any = early
    assert [(r["status"]["groupName"], r["doneAt"]) for r in seen] == [("PENDING", None)]
    assert late[-1]["status"]["groupName"] != "PENDING"  # type: ignore[index]
    assert late[-1]["doneAt"] is not None


def test_the_mix_covers_every_group_old_and_new_errors_and_two_currencies() -> None:
    """The traffic a demo shows: realistic, and varied enough to fill a dashboard."""
    sim = Simulator(rate=0, api_key=API_KEY, seed=9)
    sim.add_burst(2000)

    truth = sim.truth()

    assert {group for group, _ in truth["messages"]} == {
        "DELIVERED",
        "UNDELIVERABLE",
        "EXPIRED",
        "REJECTED",
    }
    names = {name for _, name in truth["errors"]}
    assert {"EC_VOICE_NO_ANSWER", "NO_ANSWER", "INSUFFICIENT_FUNDS"} <= names
    assert set(truth["cost"]) == {"EUR", "USD"}
    assert truth["total"] == 2000
