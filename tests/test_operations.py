"""Production operations on real processes: log format, stop signals, reload, secrets, TLS.

Every exporter here is `python -m exporter` on 127.0.0.1:0 polling a simulator that runs in
the test process over real HTTP. Certificates come from a throwaway CA made by trustme, and
the last word on /metrics belongs to a real Prometheus server.
"""

from __future__ import annotations

import base64
import calendar
import json
import re
import signal
import socket
import sqlite3
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import bcrypt
import httpx
import pytest
import trustme
import yaml
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from exporter import __version__
from exporter.cli import _without_userinfo
from exporter.simulator import Fault, Simulator
from tests.conftest import need_tool
from tests.procs import ExporterProcess, running_exporter

ROOT = Path(__file__).resolve().parent.parent

KEY = "right-key-7c1e90"
WRONG_KEY = "wrong-key-2b9d41"
USER = "ops-reader"
PASSWORD = "Right-Pa55word-e3"
WRONG_PASSWORD = "Wrong-Pa55word-k8"
UNAUTHORIZED_LINE = (
    "poll failed reason=unauthorized detail='HTTP 401: UNAUTHORIZED: Invalid login details'"
)

SCRAPER = "prometheus"
SCRAPE_PASSWORD = "scrape-pa55-4f2a"
SCRAPE_HASH = bcrypt.hashpw(SCRAPE_PASSWORD.encode(), bcrypt.gensalt(rounds=6)).decode()

MESSAGES = "infobip_voice_messages_total"
UP = "infobip_exporter_up"
LAST_SUCCESS = "infobip_exporter_last_success_timestamp_seconds"
POLL_ERRORS = "infobip_exporter_poll_errors_total"

STOPPED = re.compile(r'(INFO exporter stopped|"message":"stopped"\})$')
JSON_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")

T = TypeVar("T")


# Waiting, scraping and stopping


def wait_for(condition: Callable[[], T | None], what: str, timeout: float = 15.0) -> T:
    """The condition's first truthy value, asked every 50 ms; fails the test past the deadline."""
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout} s: {what}")
        time.sleep(0.05)
    return result


def scrape(exporter: ExporterProcess) -> list[Sample]:
    response = httpx.get(f"{exporter.base_url}/metrics", timeout=5)
    assert response.status_code == 200
    return [s for family in text_string_to_metric_families(response.text) for s in family.samples]


def scrape_until(
    exporter: ExporterProcess, what: str, holds: Callable[[list[Sample]], bool]
) -> list[Sample]:
    def attempt() -> list[Sample] | None:
        samples = scrape(exporter)
        return samples if holds(samples) else None

    return wait_for(attempt, what)


def value(samples: list[Sample], name: str, **labels: str) -> float | None:
    return next((s.value for s in samples if s.name == name and s.labels == labels), None)


def total(samples: list[Sample], name: str) -> float:
    return sum(s.value for s in samples if s.name == name)


def unauthorized(samples: list[Sample]) -> float:
    return value(samples, POLL_ERRORS, reason="unauthorized") or 0.0


def stop(exporter: ExporterProcess, sig: signal.Signals = signal.SIGTERM) -> tuple[int, float]:
    """Send a stop signal; the exit code and the seconds the process took to end."""
    began = time.monotonic()
    exporter.proc.send_signal(sig)
    code = exporter.proc.wait(timeout=10)
    return code, time.monotonic() - began


def full_log(exporter: ExporterProcess) -> str:
    """All of stderr, once the reader has reached the last line a clean stop writes."""
    wait_for(
        lambda: any(STOPPED.search(line.rstrip("\n")) for line in exporter.lines),
        "the exporter's last log line",
    )
    return exporter.log_text()


def json_entries(exporter: ExporterProcess) -> list[dict[str, Any]]:
    return [json.loads(line) for line in full_log(exporter).splitlines()]


def without_time(entry: dict[str, Any]) -> dict[str, Any]:
    return {key: item for key, item in entry.items() if key != "time"}


# The simulated account and the files an operator writes


@contextmanager
def serving(sim: Simulator) -> Iterator[str]:
    url = sim.start()
    try:
        yield url
    finally:
        sim.stop()


def write_config(
    path: Path,
    base_url: str,
    infobip: dict[str, str],
    server: dict[str, str] | None = None,
    **collector: str,
) -> Path:
    document: dict[str, Any] = {
        "infobip": {"base_url": base_url, **infobip},
        "collector": {"interval": "1s", **collector},
    }
    if server is not None:
        document["server"] = server
    path.write_text(yaml.safe_dump(document))
    return path


def replace_file(path: Path, text: str) -> None:
    """New content in one rename, the way Kubernetes swaps in a rotated Secret."""
    fresh = path.with_name(f"{path.name}.new")
    fresh.write_text(text)
    fresh.replace(path)


def saved_messages(state: Path) -> dict[tuple[str, str], int]:
    """The non-zero message totals in a state file, as the exporter last saved them."""
    with closing(sqlite3.connect(state)) as db:
        (blob,) = db.execute("SELECT value FROM meta WHERE key = 'totals'").fetchone()
    return {
        (group, status): count for group, status, count in json.loads(blob)["messages"] if count
    }


# 1. Log format


def test_json_logs_are_one_object_a_line_in_utc_with_the_fields_of_the_message(
    tmp_path: Path,
) -> None:
    """--log-format json: each stderr line is one object (time, level, logger, message and
    the message's key=value pairs as fields), with UTC times even on a host in UTC-5."""
    with serving(Simulator(rate=5, api_key=KEY)) as url:
        config = write_config(tmp_path / "config.yaml", url, {"api_key": KEY})
        with running_exporter(
            ["--config", str(config), "--log-format", "json"], env={"TZ": "EST+5"}
        ) as exporter:
            scrape_until(exporter, "a successful poll", lambda s: value(s, UP) == 1)
            code, _ = stop(exporter)
        entries = json_entries(exporter)
    address = exporter.base_url.removeprefix("http://")

    assert code == 0
    assert [entry["message"] for entry in entries] == [
        f"starting version={__version__} base_url={url}",
        f"listening address={address} scheme=http",
        "polling interval=1s page_size=1000",
        "stopping signal=SIGTERM",
        "polling stopped",
        "stopped",
    ]
    assert without_time(entries[1]) == {
        "level": "info",
        "logger": "exporter",
        "message": f"listening address={address} scheme=http",
        "fields": {"address": address, "scheme": "http"},
    }
    for entry in entries:
        assert set(entry) - {"fields"} == {"time", "level", "logger", "message"}
        assert JSON_TIME.fullmatch(entry["time"])
    logged = calendar.timegm(time.strptime(entries[1]["time"][:19], "%Y-%m-%dT%H:%M:%S"))
    assert abs(logged - time.time()) < 60


# 2. Stop signals


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_signal_exits_0_within_5_seconds_with_the_totals_saved(
    sig: signal.Signals, tmp_path: Path
) -> None:
    """SIGTERM and SIGINT stop polling and end the process with 0 in under 5 s; the state
    file holds exactly the totals counted."""
    sim = Simulator(rate=5, api_key=KEY, pending_seconds=(0.2, 1.0))
    state = tmp_path / "state.db"
    with serving(sim) as url:
        config = write_config(
            tmp_path / "config.yaml", url, {"api_key": KEY}, state_path=str(state)
        )
        with running_exporter(["--config", str(config)]) as exporter:
            scrape_until(exporter, "counted messages", lambda s: total(s, MESSAGES) > 0)
            sim.pause()
            truth = sim.truth()
            scrape_until(
                exporter, "every message counted", lambda s: total(s, MESSAGES) == truth["total"]
            )
            code, seconds = stop(exporter, sig)
        log = full_log(exporter)

    assert code == 0
    assert seconds < 5
    assert saved_messages(state) == truth["messages"]
    assert f"INFO exporter stopping signal={sig.name}\n" in log


def test_a_stop_signal_during_a_hanging_api_request_still_exits_0_within_5_seconds(
    tmp_path: Path,
) -> None:
    """The API takes 8 s to answer the first request; SIGTERM while it hangs abandons the
    request and the process still ends with 0 in under 5 s."""
    sim = Simulator(rate=5, api_key=KEY)
    sim.inject(Fault("slow", delay=8))
    with serving(sim) as url:
        config = write_config(
            tmp_path / "config.yaml", url, {"api_key": KEY}, state_path=str(tmp_path / "s.db")
        )
        with running_exporter(["--config", str(config)]) as exporter:
            wait_for(lambda: len(sim.requests) >= 1, "the first request reaching the simulator")
            code, seconds = stop(exporter)
        log = full_log(exporter)

    assert len(sim.requests) == 1
    assert len(sim.faults) == 0
    assert code == 0
    assert seconds < 5
    assert "INFO exporter stopping signal=SIGTERM\n" in log
    assert "polling stopped" not in log


# 3. Reload on SIGHUP


def test_sighup_applies_a_corrected_api_key_and_the_polls_recover(tmp_path: Path) -> None:
    """A wrong key gets 401s (up 0); after the config file is fixed and SIGHUP sent, polls
    succeed and messages are counted. Neither key is ever logged, even at debug level."""
    sim = Simulator(rate=5, api_key=KEY, pending_seconds=(0.2, 1.0))
    with serving(sim) as url:
        config = write_config(tmp_path / "config.yaml", url, {"api_key": WRONG_KEY})
        with running_exporter(["--config", str(config), "--log-level", "debug"]) as exporter:
            refused = scrape_until(exporter, "a refused poll", lambda s: unauthorized(s) >= 1)
            write_config(config, url, {"api_key": KEY})
            exporter.proc.send_signal(signal.SIGHUP)
            recovered = scrape_until(
                exporter,
                "polls succeeding after SIGHUP",
                lambda s: value(s, UP) == 1 and total(s, MESSAGES) > 0,
            )
            exposition = httpx.get(f"{exporter.base_url}/metrics", timeout=5).text
            code, _ = stop(exporter)
        log = full_log(exporter)

    assert value(refused, UP) == 0
    assert total(refused, MESSAGES) == 0
    assert unauthorized(recovered) >= unauthorized(refused)
    assert code == 0
    assert UNAUTHORIZED_LINE in log
    assert "INFO exporter configuration reloaded\n" in log
    for secret in (KEY, WRONG_KEY):
        assert secret not in log
        assert secret not in exposition


def test_sighup_with_a_new_interval_applies_it_and_never_lowers_a_message_count(
    tmp_path: Path,
) -> None:
    """Counts survive a reload: every infobip_voice_messages_total series scraped before,
    during and after a SIGHUP that doubles the interval only ever grows, and the polls
    that follow are 2 s apart instead of 1 s."""
    sim = Simulator(rate=5, api_key=KEY, pending_seconds=(0.2, 1.0))
    scrapes: list[list[Sample]] = []
    polls: list[float] = []

    def polls_seen(count: int) -> Callable[[list[Sample]], bool]:
        """Keep every scrape and each new poll's end; hold once `count` polls counted some."""

        def holds(samples: list[Sample]) -> bool:
            scrapes.append(samples)
            finished = value(samples, LAST_SUCCESS) or 0.0
            if finished and (not polls or finished > polls[-1]):
                polls.append(finished)
            return len(polls) >= count and total(samples, MESSAGES) > 0

        return holds

    with serving(sim) as url:
        config = write_config(tmp_path / "config.yaml", url, {"api_key": KEY})
        with running_exporter(["--config", str(config)]) as exporter:
            scrape_until(exporter, "two polls", polls_seen(2))
            before = polls[-1] - polls[-2]
            write_config(config, url, {"api_key": KEY}, interval="2s")
            exporter.proc.send_signal(signal.SIGHUP)
            wait_for(lambda: "configuration reloaded" in exporter.log_text(), "the reload")
            scrape_until(exporter, "three polls after the reload", polls_seen(len(polls) + 3))
            after = polls[-1] - polls[-2]
            code, _ = stop(exporter)

    series = {
        (s.labels["status_group"], s.labels["status"]) for s in scrapes[-1] if s.name == MESSAGES
    }
    for key in series:
        counts = [value(s, MESSAGES, status_group=key[0], status=key[1]) or 0 for s in scrapes]
        assert counts == sorted(counts), key
    sums = [total(s, MESSAGES) for s in scrapes]
    assert sums == sorted(sums)
    assert sums[-1] > sums[0]
    assert before < 2
    assert after >= 2
    assert code == 0


def test_sighup_with_a_broken_config_keeps_the_running_one_and_logs_one_error(
    tmp_path: Path,
) -> None:
    """A reload of a config file with a bad value is refused with one ERROR line naming the
    key; the exporter goes on polling with the configuration it had."""
    sim = Simulator(rate=5, api_key=KEY, pending_seconds=(0.2, 1.0))
    with serving(sim) as url:
        config = write_config(tmp_path / "config.yaml", url, {"api_key": KEY})
        args = ["--config", str(config), "--log-format", "json"]
        with running_exporter(args) as exporter:
            first = scrape_until(exporter, "a successful poll", lambda s: value(s, UP) == 1)
            write_config(config, url, {"api_key": KEY}, interval="soon")
            exporter.proc.send_signal(signal.SIGHUP)
            wait_for(lambda: '"level":"error"' in exporter.log_text(), "the refused reload")
            refused_at = time.time()
            later = scrape_until(
                exporter,
                "a successful poll after the refused reload",
                lambda s: (value(s, LAST_SUCCESS) or 0) > refused_at,
            )
            running = exporter.proc.poll()
            code, _ = stop(exporter)
        entries = json_entries(exporter)
    problem = "collector.interval: 'soon' is not a duration such as 90s, 5m, 1h or 2d"

    assert [without_time(e) for e in entries if e["level"] == "error"] == [
        {
            "level": "error",
            "logger": "exporter",
            "message": f'reload refused, keeping the running configuration error="{problem}"',
            "fields": {"error": problem},
        }
    ]
    assert running is None
    assert value(later, UP) == 1
    assert total(later, MESSAGES) >= total(first, MESSAGES)
    assert "configuration reloaded" not in [e["message"] for e in entries]
    assert code == 0


# 4. Secrets


@dataclass(frozen=True)
class SecretFile:
    """One way of keeping the Infobip credential in a file that may be rotated."""

    simulator: Callable[[], Simulator]
    infobip: Callable[[Path], dict[str, str]]
    wrong: str
    right: str
    secrets: tuple[str, ...]


def basic(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


SECRET_FILES = {
    "api_key_file": SecretFile(
        simulator=lambda: Simulator(rate=5, api_key=KEY),
        infobip=lambda path: {"api_key_file": str(path)},
        wrong=WRONG_KEY,
        right=KEY,
        secrets=(KEY, WRONG_KEY),
    ),
    "password_file": SecretFile(
        simulator=lambda: Simulator(
            rate=5, username=USER, password=PASSWORD, api_key="unused-app-key-5d0a"
        ),
        infobip=lambda path: {"username": USER, "password_file": str(path)},
        wrong=WRONG_PASSWORD,
        right=PASSWORD,
        secrets=(PASSWORD, WRONG_PASSWORD, basic(USER, PASSWORD), basic(USER, WRONG_PASSWORD)),
    ),
}


@pytest.mark.parametrize("kind", list(SECRET_FILES))
def test_a_rotated_secret_file_is_used_without_a_restart_and_no_secret_leaks(
    kind: str, tmp_path: Path
) -> None:
    """A credential file holding a wrong secret gets 401s; once the file holds the right one
    the next poll succeeds, with no signal and no restart. No secret is in the argument
    list, in the debug log (the 401 line included) or on /metrics."""
    case = SECRET_FILES[kind]
    secret_file = tmp_path / "secret"
    secret_file.write_text(f"{case.wrong}\n")
    with serving(case.simulator()) as url:
        config = write_config(tmp_path / "config.yaml", url, case.infobip(secret_file))
        with running_exporter(["--config", str(config), "--log-level", "debug"]) as exporter:
            refused = scrape_until(exporter, "a refused poll", lambda s: unauthorized(s) >= 1)
            replace_file(secret_file, f"{case.right}\n")
            scrape_until(exporter, "a poll with the new secret", lambda s: value(s, UP) == 1)
            argv = Path(f"/proc/{exporter.proc.pid}/cmdline").read_bytes().split(b"\0")[:-1]
            exposition = httpx.get(f"{exporter.base_url}/metrics", timeout=5).text
            code, _ = stop(exporter)
        log = full_log(exporter)

    assert value(refused, UP) == 0
    assert code == 0
    assert [arg.decode() for arg in argv] == [
        sys.executable,
        "-m",
        "exporter",
        "--listen",
        "127.0.0.1:0",
        "--config",
        str(config),
        "--log-level",
        "debug",
    ]
    assert UNAUTHORIZED_LINE in log
    assert f"credential file changed, reloaded path={secret_file}\n" in log
    assert "configuration reloaded" not in log
    for secret in case.secrets:
        assert secret not in log
        assert secret not in exposition


# 5. Protecting /metrics


@dataclass(frozen=True)
class Pki:
    """A CA, the exporter's certificate for 127.0.0.1, and client certificates."""

    ca: Path
    cert: Path
    key: Path
    client: trustme.LeafCert
    stranger: trustme.LeafCert
    """A client certificate from another CA."""


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1")
    ca.cert_pem.write_to_path(str(folder / "ca.pem"))
    for pem in server.cert_chain_pems:
        pem.write_to_path(str(folder / "server.pem"), append=True)
    server.private_key_pem.write_to_path(str(folder / "server.key"))
    return Pki(
        ca=folder / "ca.pem",
        cert=folder / "server.pem",
        key=folder / "server.key",
        client=ca.issue_cert("scraper.example"),
        stranger=trustme.CA().issue_cert("scraper.example"),
    )


def web_config(pki: Pki, client_certs: bool = False) -> dict[str, Any]:
    """An exporter-toolkit style web config: TLS, basic auth, maybe client certificates."""
    tls = {"cert_file": str(pki.cert), "key_file": str(pki.key)}
    if client_certs:
        tls |= {"client_ca_file": str(pki.ca), "client_auth_type": "RequireAndVerifyClientCert"}
    return {"tls_server_config": tls, "basic_auth_users": {SCRAPER: SCRAPE_HASH}}


@contextmanager
def protected_exporter(tmp_path: Path, pki: Pki, client_certs: bool = False) -> Iterator[str]:
    """An exporter behind TLS and basic auth, polling a simulator; yields its https URL."""
    web = tmp_path / "web.yaml"
    web.write_text(yaml.safe_dump(web_config(pki, client_certs)))
    with serving(Simulator(rate=5, api_key=KEY)) as url:
        config = write_config(
            tmp_path / "config.yaml", url, {"api_key": KEY}, server={"web_config_file": str(web)}
        )
        with running_exporter(["--config", str(config)]) as exporter:
            address = exporter.base_url.removeprefix("http://")
            assert f"listening address={address} scheme=https\n" in exporter.log_text()
            yield f"https://{address}"


def client_context(pki: Pki, cert: trustme.LeafCert | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.ca))
    if cert is not None:
        cert.configure_cert(context)
    return context


def build_info_line() -> str:
    return f'infobip_exporter_build_info{{version="{__version__}"}} 1.0'


def test_metrics_over_tls_answer_only_the_right_basic_auth_credentials(
    tmp_path: Path, pki: Pki
) -> None:
    """With TLS and basic auth: no credentials and a wrong password get 401, the right ones
    get the exposition, and plain HTTP to the TLS port gets no HTTP answer at all."""
    with protected_exporter(tmp_path, pki) as base:
        with httpx.Client(verify=client_context(pki), timeout=5) as client:
            anonymous = client.get(f"{base}/metrics")
            wrong = client.get(f"{base}/metrics", auth=(SCRAPER, "not-the-password"))
            right = client.get(f"{base}/metrics", auth=(SCRAPER, SCRAPE_PASSWORD))
            probes = [client.get(f"{base}{path}").status_code for path in ("/healthz", "/readyz")]
        with pytest.raises(httpx.ReadError):
            httpx.get(base.replace("https://", "http://") + "/metrics", timeout=5)

    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"] == 'Basic realm="infobip-voice-exporter"'
    assert wrong.status_code == 401
    assert right.status_code == 200
    assert build_info_line() in right.text.splitlines()
    assert probes == [200, 200]


def test_sighup_applies_a_new_user_list_to_the_next_request(tmp_path: Path, pki: Pki) -> None:
    """Rotating the scrape password needs no restart: the web config is read again too."""
    web = tmp_path / "web.yaml"
    web.write_text(yaml.safe_dump(web_config(pki)))
    rotated = bcrypt.hashpw(b"rotated-pass-5521", bcrypt.gensalt(rounds=4)).decode()
    with serving(Simulator(rate=5, api_key=KEY)) as url:
        config = write_config(
            tmp_path / "config.yaml", url, {"api_key": KEY}, server={"web_config_file": str(web)}
        )
        with running_exporter(["--config", str(config)]) as exporter:
            base = exporter.base_url.replace("http://", "https://")
            with httpx.Client(verify=client_context(pki), timeout=5) as client:
                before = client.get(f"{base}/metrics", auth=(SCRAPER, SCRAPE_PASSWORD))
                replace_file(
                    web, yaml.safe_dump({**web_config(pki), "basic_auth_users": {SCRAPER: rotated}})
                )
                exporter.proc.send_signal(signal.SIGHUP)
                wait_for(
                    lambda: "configuration reloaded" in exporter.log_text() or None,
                    "the reload",
                )
                old = client.get(f"{base}/metrics", auth=(SCRAPER, SCRAPE_PASSWORD))
                new = client.get(f"{base}/metrics", auth=(SCRAPER, "rotated-pass-5521"))

    assert (before.status_code, old.status_code, new.status_code) == (200, 401, 200)


def test_with_client_certificates_required_only_a_client_with_a_trusted_one_gets_in(
    tmp_path: Path, pki: Pki
) -> None:
    """RequireAndVerifyClientCert: a client without a certificate, or with one from another
    CA, is refused during TLS; one with a certificate from client_ca_file is served."""
    auth = (SCRAPER, SCRAPE_PASSWORD)
    with protected_exporter(tmp_path, pki, client_certs=True) as base:
        with pytest.raises(httpx.ReadError, match="CERTIFICATE_REQUIRED"):
            httpx.get(f"{base}/metrics", verify=client_context(pki), auth=auth, timeout=5)
        stranger = client_context(pki, pki.stranger)
        with pytest.raises(httpx.ReadError, match="UNKNOWN_CA"):
            httpx.get(f"{base}/metrics", verify=stranger, auth=auth, timeout=5)
        trusted = client_context(pki, pki.client)
        answer = httpx.get(f"{base}/metrics", verify=trusted, auth=auth, timeout=5)

    assert answer.status_code == 200
    assert build_info_line() in answer.text.splitlines()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@contextmanager
def running_prometheus(binary: str, tmp_path: Path, config: dict[str, Any]) -> Iterator[str]:
    """A real Prometheus server on a free loopback port; yields its URL, kills it after."""
    config_file = tmp_path / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(config))
    url = f"http://127.0.0.1:{free_port()}"
    with (tmp_path / "prometheus.log").open("w") as log:
        proc = subprocess.Popen(
            [
                binary,
                f"--config.file={config_file}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address={url.removeprefix('http://')}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for(lambda: proc.poll() is not None or ready(url), "Prometheus to be ready")
            assert proc.poll() is None, (tmp_path / "prometheus.log").read_text()
            yield url
        finally:
            proc.kill()
            proc.wait()


def ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/-/ready", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def scrape_job(name: str, target: str, password: str, ca: Path) -> dict[str, Any]:
    return {
        "job_name": name,
        "scheme": "https",
        "tls_config": {"ca_file": str(ca)},
        "basic_auth": {"username": SCRAPER, "password": password},
        "static_configs": [{"targets": [target]}],
    }


def test_prometheus_scrapes_the_protected_exporter_and_a_wrong_password_gets_401(
    tmp_path: Path, pki: Pki
) -> None:
    """A real Prometheus scrapes over TLS (trusting the test CA) with basic auth: the target
    is up and build_info reads 1. A second job with a wrong password sees the target down
    with a 401."""
    binary = need_tool("prometheus")
    with protected_exporter(tmp_path, pki) as base:
        target = base.removeprefix("https://")
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
            "scrape_configs": [
                scrape_job("infobip", target, SCRAPE_PASSWORD, pki.ca),
                scrape_job("infobip-wrong-password", target, "not-the-password", pki.ca),
            ],
        }
        with running_prometheus(binary, tmp_path, config) as prometheus:

            def health() -> dict[str, tuple[str, str]] | None:
                answer = httpx.get(f"{prometheus}/api/v1/targets", timeout=5).json()
                found = {
                    t["labels"]["job"]: (t["health"], t["lastError"])
                    for t in answer["data"]["activeTargets"]
                }
                scraped = len(found) == 2 and all(h != "unknown" for h, _ in found.values())
                return found if scraped else None

            def build_info() -> list[dict[str, Any]] | None:
                query = {"query": "infobip_exporter_build_info"}
                answer = httpx.get(f"{prometheus}/api/v1/query", params=query, timeout=5)
                result: list[dict[str, Any]] = answer.json()["data"]["result"]
                return result or None

            targets = wait_for(health, "both targets scraped")
            result = wait_for(build_info, "build_info stored")

    assert targets == {
        "infobip": ("up", ""),
        "infobip-wrong-password": ("down", "server returned HTTP status 401 Unauthorized"),
    }
    assert [(r["metric"], r["value"][1]) for r in result] == [
        (
            {
                "__name__": "infobip_exporter_build_info",
                "instance": target,
                "job": "infobip",
                "version": __version__,
            },
            "1",
        )
    ]


# 6. Checking a web config file


def check_config(tmp_path: Path, web: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    web_file = tmp_path / "web.yaml"
    web_file.write_text(yaml.safe_dump(web))
    config = write_config(
        tmp_path / "config.yaml",
        "https://example.api.infobip.com",
        {"api_key": KEY},
        server={"web_config_file": str(web_file)},
    )
    return subprocess.run(
        [sys.executable, "-m", "exporter", "--config", str(config), "--check-config"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
        check=False,
    )


TLS_FILES = {"cert_file": "server.pem", "key_file": "server.key"}


@pytest.mark.parametrize(
    ("web", "problem"),
    [
        pytest.param(
            {"tls_server_config": {**TLS_FILES, "client_auth": "RequireAndVerifyClientCert"}},
            "web config: tls_server_config.client_auth: unknown key",
            id="misspelt-tls-key",
        ),
        pytest.param(
            {"basic_auth_user": {SCRAPER: SCRAPE_HASH}},
            "web config: basic_auth_user: unknown key",
            id="misspelt-top-level-key",
        ),
        pytest.param(
            {"tls_server_config": {**TLS_FILES, "client_auth_type": "RequireAndVerifyClientCert"}},
            "web config: tls_server_config.client_ca_file: required by RequireAndVerifyClientCert",
            id="client-certs-without-a-ca",
        ),
        pytest.param(
            {"basic_auth_users": {SCRAPER: SCRAPE_PASSWORD}},
            f"web config: basic_auth_users.{SCRAPER}: not a bcrypt hash",
            id="plain-password-instead-of-a-hash",
        ),
    ],
)
def test_check_config_rejects_a_bad_web_config_with_one_line_naming_the_key(
    web: dict[str, Any], problem: str, tmp_path: Path
) -> None:
    """--check-config exits 2 and prints one line naming the bad key of the web config file,
    without quoting a password put where a hash belongs."""
    result = check_config(tmp_path, web)

    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == f"config error: {problem}\n"


def test_check_config_accepts_a_complete_web_config(tmp_path: Path, pki: Pki) -> None:
    """The web config the TLS tests use, client certificates included, checks as valid."""
    result = check_config(tmp_path, web_config(pki, client_certs=True))

    assert result.returncode == 0
    assert result.stdout == ""
    assert result.stderr == "config ok\n"


@pytest.mark.parametrize(
    ("url", "logged"),
    [
        ("https://ann:s3cret@x.api.infobip.com/base", "https://x.api.infobip.com/base"),
        ("https://x.api.infobip.com", "https://x.api.infobip.com"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
    ],
)
def test_a_password_inside_the_base_url_never_reaches_the_log(url: str, logged: str) -> None:
    """The start-up line names the base URL without a `user:password@` part."""
    assert _without_userinfo(url) == logged
