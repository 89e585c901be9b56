"""Resident memory a Ledger adds per tracked message; run alone in a fresh process.

`python bench/ledger_fill.py COUNT` fills one in-memory Ledger with COUNT final messages
through `admit`, a page of a thousand at a time as polls would, and prints one JSON object:
VmRSS before and after, and how many messages the ledger holds. Message ids are 36-character
UUID strings, as the API sends them, and each message has its own `sentAt`.
"""

from __future__ import annotations

import gc
import json
import random
import sys
import uuid
from decimal import Decimal

from exporter.ledger import Ledger
from exporter.parser import Error, Price, Status, VoiceLog

START = 1_780_000_000.0
PAGE = 1000


def vm_rss(pid: int | str = "self") -> int:
    """Resident set size in bytes, from /proc/PID/status."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS in /proc/{pid}/status")


def fill(count: int) -> dict[str, int]:
    rnd = random.Random(7)
    status = Status("DELIVERED", "DELIVERED_TO_HANDSET")
    error = Error("OK", "NO_ERROR", 0, False)
    price = Price(per_second=Decimal("0.0125"), currency="EUR")
    ledger = Ledger()
    now = START + count / 10 + 60
    gc.collect()
    before = vm_rss()

    for first in range(0, count, PAGE):
        page = []
        for number in range(first, min(first + PAGE, count)):
            message_id = str(uuid.UUID(int=rnd.getrandbits(128), version=4))
            sent_at = round(START + number / 10, 3)
            done_at = sent_at + 9.5
            page.append(VoiceLog(message_id, sent_at, done_at, 42, "22801", price, status, error))
        ledger.admit(page, now)
    del page
    gc.collect()

    return {"before": before, "after": vm_rss(), "tracked": len(ledger)}


if __name__ == "__main__":
    print(json.dumps(fill(int(sys.argv[1]))))
