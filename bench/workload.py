"""Realistic `/tts/3/logs` answers for the benchmark, built ahead of the timed part.

Records take the exact shape of `Simulator._render` and its mix: the outcomes with their
weights, the prices, currencies and networks come from `exporter.simulator`'s own tables.
Rendering a million records through the simulator itself costs close to a minute (two
`strftime` calls and two UUIDs of Python code each), so the same dictionaries are built here
with a per-second cache of the timestamp text; `check_shape` compares one of them with a
record the simulator renders, so the two cannot drift apart unnoticed.
"""

from __future__ import annotations

import itertools
import random
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson

from exporter.simulator import NETWORKS, OUTCOMES, PRICES, SENDER, Simulator

START = 1_780_000_000.0
"""When the generated traffic begins, in seconds since the epoch (May 2026)."""

RATE = 10.0
"""Messages a second: a million records span about 28 hours, inside the API's 48."""

ZONE = timezone(timedelta(hours=1))
"""The simulator's default account zone: timestamps end in +0100."""

ERROR_GROUPS = ["OK", "HANDSET_ERRORS", "USER_ERRORS", "OPERATOR_ERRORS"]


class Stamps:
    """Timestamp text in the API's form, with the part down to the second cached."""

    def __init__(self) -> None:
        self._seconds: dict[int, str] = {}

    def __call__(self, seconds: float) -> str:
        millis = round(seconds * 1000)
        whole, fraction = divmod(millis, 1000)
        prefix = self._seconds.get(whole)
        if prefix is None:
            moment = datetime.fromtimestamp(whole, ZONE)
            prefix = self._seconds[whole] = moment.strftime("%Y-%m-%dT%H:%M:%S.")
        return f"{prefix}{fraction:03d}+0100"


class Records:
    """Final voice logs sent `1 / RATE` apart, with the simulator's mix of everything."""

    def __init__(self, seed: int) -> None:
        self.random = random.Random(seed)
        self.stamp = Stamps()
        self.sequence = itertools.count()
        self.weights = list(itertools.accumulate(o[0] for o in OUTCOMES))
        self.status = [_status(o) for o in OUTCOMES]
        self.error = [_error(o) for o in OUTCOMES]

    def _uuid(self) -> str:
        return str(uuid.UUID(int=self.random.getrandbits(128), version=4))

    def record(self) -> dict[str, Any]:
        rnd = self.random
        sent_at = round(START + next(self.sequence) / RATE, 3)
        which = rnd.choices(range(len(OUTCOMES)), cum_weights=self.weights)[0]
        outcome = OUTCOMES[which]
        currency, price = rnd.choice(PRICES)
        done_at = round(sent_at + rnd.uniform(2.0, 20.0), 3)
        duration = rnd.randint(3, 240) if outcome[2] == "DELIVERED" else 0
        return {
            "bulkId": self._uuid(),
            "messageId": self._uuid(),
            "to": "4179" + str(int(sent_at * 1000))[-7:],
            "from": SENDER,
            "text": "Your appointment is tomorrow at 10.",
            "sentAt": self.stamp(sent_at),
            "doneAt": self.stamp(done_at),
            "duration": duration,
            "mccMnc": rnd.choice(NETWORKS),
            "price": {"pricePerSecond": float(price), "currency": currency},
            "status": dict(self.status[which]),
            "error": dict(self.error[which]),
        }


def _status(o: tuple[Any, ...]) -> dict[str, Any]:
    return {
        "groupId": o[1],
        "groupName": o[2],
        "id": o[3],
        "name": o[4],
        "description": o[4].replace("_", " ").capitalize(),
    }


def _error(o: tuple[Any, ...]) -> dict[str, Any]:
    return {
        "groupId": ERROR_GROUPS.index(o[5]),
        "groupName": o[5],
        "id": o[6],
        "name": o[7],
        "description": o[7].lower(),
        "permanent": o[8],
    }


def pages(count: int, page_size: int, seed: int = 2026) -> Iterator[tuple[bytes, float]]:
    """`count` records in answers of `page_size`, newest first as the API sends them.

    Each answer comes with the moment a poll would have made it: 30 seconds after its newest
    record was sent, when every record of the page is final.
    """
    records = Records(seed)
    made = 0
    while made < count:
        size = min(page_size, count - made)
        page = [records.record() for _ in range(size)]
        made += size
        page.reverse()
        newest = START + (made - 1) / RATE
        yield orjson.dumps({"results": page}), newest + 30.0


def _shape(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _shape(item) for key, item in value.items()}
    return type(value).__name__


def check_shape() -> None:
    """Raise when the records built here differ in shape from the simulator's."""
    simulator = Simulator(rate=0, seed=1)
    simulator.add_burst(1)
    status, _, body = simulator.answer("/tts/3/logs?limit=1", {"authorization": "App demo-key"})
    rendered = orjson.loads(body)["results"][0]
    built = orjson.loads(next(pages(1, 1))[0])["results"][0]
    if status != 200 or _shape(rendered) != _shape(built):
        raise RuntimeError(f"workload shape {_shape(built)} != simulator's {_shape(rendered)}")
