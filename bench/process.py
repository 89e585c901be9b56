"""The exporter as an operator runs it: `python -m exporter --demo` on 127.0.0.1, port 0.

Resident memory at rest, the cost of a /metrics scrape alone and with concurrent scrapers,
and the time from process start to the first successful scrape.
"""

from __future__ import annotations

import re
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import httpx
from prometheus_client.parser import text_string_to_metric_families

from exporter.simulator import OUTCOMES, PRICES

LISTENING = re.compile(r"listening address=(\S+)")
COMMAND = [sys.executable, "-m", "exporter", "--demo", "--listen", "127.0.0.1:0"]


@dataclass
class Exporter:
    proc: subprocess.Popen[str]
    url: str = ""
    ready: threading.Event = field(default_factory=threading.Event)
    lines: list[str] = field(default_factory=list)


def _pump(exporter: Exporter) -> None:
    assert exporter.proc.stderr is not None
    for line in exporter.proc.stderr:
        exporter.lines.append(line)
        match = LISTENING.search(line)
        if match and not exporter.ready.is_set():
            exporter.url = f"http://{match.group(1)}"
            exporter.ready.set()
    exporter.ready.set()


def _start(command: list[str]) -> Exporter:
    proc = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    exporter = Exporter(proc)
    threading.Thread(target=_pump, args=(exporter,), daemon=True).start()
    return exporter


def _stop(exporter: Exporter) -> None:
    exporter.proc.terminate()
    try:
        exporter.proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        exporter.proc.kill()
        exporter.proc.wait()


@contextmanager
def demo_exporter() -> Iterator[Exporter]:
    """A demo exporter that has listened and completed one successful poll."""
    exporter = _start(COMMAND)
    try:
        if not exporter.ready.wait(30) or not exporter.url:
            raise RuntimeError("exporter did not start:\n" + "".join(exporter.lines))
        deadline = time.monotonic() + 30
        while "infobip_exporter_up 1.0" not in httpx.get(f"{exporter.url}/metrics").text:
            if time.monotonic() > deadline:
                raise RuntimeError("exporter never polled successfully")
            time.sleep(0.05)
        yield exporter
    finally:
        _stop(exporter)


def rss_at_rest(exporter: Exporter, settle: float = 2.0) -> int:
    """VmRSS of the exporter process after it has sat idle for `settle` seconds."""
    time.sleep(settle)
    with open(f"/proc/{exporter.proc.pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def bare_interpreter_rss() -> int:
    """VmRSS of this Python doing nothing: the floor under any Python exporter."""
    code = "print(open('/proc/self/status').read())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    line = next(x for x in out.stdout.splitlines() if x.startswith("VmRSS:"))
    return int(line.split()[1]) * 1024


def mix_present(url: str) -> tuple[bool, str]:
    """Whether every status, error and currency of the simulator's mix is in the exposition."""
    statuses = {(o[2], o[4]) for o in OUTCOMES}
    errors = {(o[5], o[7]) for o in OUTCOMES if o[6] != 0}
    currencies = {currency for currency, _ in PRICES}
    text = httpx.get(f"{url}/metrics").text
    seen: dict[str, set[tuple[str, ...]]] = {"messages": set(), "errors": set(), "cost": set()}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if not sample.value:
                continue
            labels = sample.labels
            if sample.name == "infobip_voice_messages_total":
                seen["messages"].add((labels["status_group"], labels["status"]))
            elif sample.name == "infobip_voice_errors_total":
                seen["errors"].add((labels["error_group"], labels["error"]))
            elif sample.name == "infobip_voice_cost_total":
                seen["cost"].add((labels["currency"],))
    present = (
        statuses <= seen["messages"]
        and errors <= seen["errors"]
        and {(c,) for c in currencies} <= seen["cost"]
    )
    series = sum(1 for line in text.splitlines() if line and not line.startswith("#"))
    detail = (
        f"{len(statuses)} statuses, {len(errors)} errors, {len(currencies)} currencies; "
        f"{series} series, {len(text.encode()) / 1024:.0f} KiB"
    )
    return present, detail


def scrape_times(url: str, path: str, scrapers: int, each: int) -> list[float]:
    """Seconds per GET of `path`, from `scrapers` threads with a client each."""
    times: list[float] = []
    lock = threading.Lock()
    start = threading.Barrier(scrapers)
    failures: list[str] = []

    def scrape() -> None:
        mine = []
        with httpx.Client(base_url=url, timeout=30) as client:
            start.wait()
            for _ in range(each):
                began = time.perf_counter()
                response = client.get(path)
                mine.append(time.perf_counter() - began)
                if response.status_code != 200:
                    failures.append(str(response.status_code))
        with lock:
            times.extend(mine)

    threads = [threading.Thread(target=scrape) for _ in range(scrapers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise RuntimeError(f"scrapes failed: {failures[:5]}")
    return times


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def startup_time() -> float:
    """Seconds from Popen to the first 200 answer of /metrics."""
    began = time.perf_counter()
    exporter = _start(COMMAND)
    try:
        if not exporter.ready.wait(30) or not exporter.url:
            raise RuntimeError("exporter did not start:\n" + "".join(exporter.lines))
        with httpx.Client(timeout=5) as client:
            while True:
                try:
                    if client.get(f"{exporter.url}/metrics").status_code == 200:
                        return time.perf_counter() - began
                except httpx.TransportError:
                    pass
                time.sleep(0.002)
    finally:
        _stop(exporter)


def interpreter_startup_time() -> float:
    """Seconds to start and end this Python doing nothing: the floor under start-up."""
    began = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    return time.perf_counter() - began


def median_of(runs: int, measure: Callable[[], float]) -> float:
    return statistics.median(measure() for _ in range(runs))
