"""The command line: wire the steps together, run them, and stop cleanly on a signal.

Exit codes: 0 after a clean stop or a successful `--once`, 1 when `--once` failed, 2 for a
configuration error (one line naming the key).
"""

from __future__ import annotations

import argparse
import logging
import re
import signal
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import orjson
from prometheus_client import generate_latest

from exporter import __version__
from exporter.client import Credentials, LogsClient, RateLimiter
from exporter.config import Config, ConfigError, load, parse_listen
from exporter.ledger import StateError, open_ledger
from exporter.metrics import Metrics
from exporter.poller import Poller, PollSettings
from exporter.server import App, HttpServer, WebConfig, WebConfigError, load_web_config
from exporter.simulator import Simulator

log = logging.getLogger("exporter")

DEMO_KEY = "demo-key"
DEMO_INTERVAL = 5.0
STOP_GRACE = 2.5
"""Seconds to let a poll in flight finish on SIGTERM; the whole stop stays under 5."""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="infobip-voice-exporter",
        description="Prometheus exporter for Infobip voice-message logs (GET /tts/3/logs).",
    )
    parser.add_argument("--config", type=Path, help="YAML configuration file")
    parser.add_argument(
        "--demo",
        action="store_true",
        help="poll a built-in simulator of the Infobip API; no account needed",
    )
    parser.add_argument("--listen", metavar="HOST:PORT", help="override server.listen")
    parser.add_argument(
        "--once",
        action="store_true",
        help="collect once, print the exposition, exit 0 on success or 1",
    )
    parser.add_argument(
        "--check-config",
        action="store_true",
        help="validate the configuration and exit: 0 valid, 2 invalid",
    )
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error", "DEBUG", "INFO", "WARNING", "ERROR"],
    )
    parser.add_argument("--log-format", default="text", choices=["text", "json"])
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser.parse_args(argv)


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, and the key=value fields."""

    def __init__(self) -> None:
        super().__init__()
        self.converter = time.gmtime  # the time field ends in Z, whatever the host's time zone

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        entry: dict[str, object] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": message,
        }
        fields = dict(_fields(message))
        if fields:
            entry["fields"] = fields
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry).decode()


_FIELD = re.compile(r"""(\w+)=('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|\S+)""")


def _fields(message: str) -> list[tuple[str, str]]:
    """The key=value pairs of a log message; quoted values lose their quotes."""
    pairs = []
    for key, value in _FIELD.findall(message):
        if value[:1] in ("'", '"') and value[-1:] == value[:1]:
            value = value[1:-1]
        pairs.append((key, value))
    return pairs


def setup_logging(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")
        formatter.converter = time.gmtime
        handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("httpx").setLevel(max(logging.WARNING, root.level))
    logging.getLogger("httpcore").setLevel(max(logging.WARNING, root.level))


@dataclass
class Settings:
    """Everything the running exporter takes from its configuration."""

    config: Config
    web: WebConfig
    base_url: str
    credentials: Credentials
    poll: PollSettings


def read_settings(args: argparse.Namespace, demo_url: str | None) -> Settings:
    """Load and check the configuration; raises ConfigError naming the bad key."""
    config = load(args.config, demo=args.demo)
    if args.listen:
        try:
            parse_listen(args.listen)
        except ValueError as exc:
            raise ConfigError(f"--listen: {exc}") from None
    web = WebConfig()
    if config.server.web_config_file is not None:
        try:
            web = load_web_config(config.server.web_config_file)
        except WebConfigError as exc:
            raise ConfigError(str(exc)) from None

    infobip = config.infobip
    if args.demo:
        base_url = demo_url or "http://127.0.0.1"
        credentials = Credentials(api_key=DEMO_KEY)
    else:
        base_url = infobip.base_url
        credentials = Credentials(
            infobip.api_key,
            infobip.api_key_file,
            infobip.username,
            infobip.password,
            infobip.password_file,
        )
    collector = config.collector
    interval = collector.interval
    if args.demo and args.config is None:
        interval = DEMO_INTERVAL
    poll = PollSettings(
        interval=interval,
        page_size=collector.page_size,
        initial_lookback=collector.initial_lookback,
        overlap=collector.overlap,
        filters=collector.filters.as_params(),
    )
    return Settings(config, web, base_url, credentials, poll)


class Exporter:
    """The running exporter: the poll loop in one thread, the web server in another."""

    def __init__(self, settings: Settings, listen: str) -> None:
        self.settings = settings
        self.metrics = Metrics()
        state = settings.config.collector.state_path
        self.ledger = open_ledger(Path(state) if state else None, self.metrics.totals.restore)
        self.limiter = RateLimiter(settings.config.collector.rate_limit)
        self.poller = Poller(
            self._client(settings), self.ledger, self.metrics, settings.poll, self.limiter
        )
        self.thread = threading.Thread(target=self.poller.run, name="poller", daemon=True)
        self.listen = listen
        self.server: HttpServer | None = None

    def _client(self, settings: Settings) -> LogsClient:
        return LogsClient(
            settings.base_url,
            settings.credentials,
            settings.config.infobip.timeout,
            self.metrics.api_request,
        )

    def serve(self) -> None:
        host, port = parse_listen(self.listen)
        app = App(self.metrics.registry, self.thread.is_alive)
        self.server = HttpServer(app, host, port)
        self.server.secure(self.settings.web)
        self.server.start()
        log.info("listening address=%s scheme=%s", self.server.address, self.server.scheme)
        self.thread.start()

    def reload(self, settings: Settings) -> None:
        """Apply a new configuration without losing counts; listen and state stay."""
        if settings.config.collector.state_path != self.settings.config.collector.state_path:
            log.warning("collector.state_path changes only with a restart")
        self.poller.reconfigure(self._client(settings), settings.poll)
        self.limiter.per_minute = settings.config.collector.rate_limit
        if self.server is not None:
            self.server.secure(settings.web)
        self.settings = settings
        log.info("configuration reloaded")

    def stop(self) -> None:
        self.poller.stop.set()
        self.thread.join(timeout=STOP_GRACE)
        if self.server is not None:
            self.server.stop()
        if not self.thread.is_alive():
            self.ledger.close()
        log.info("stopped")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.log_level, args.log_format)

    simulator: Simulator | None = None
    demo_url = None
    if args.demo and not args.check_config:
        simulator = Simulator(rate=5.0, api_key=DEMO_KEY, backfill=600.0)
        demo_url = simulator.start()
        log.info("demo simulator started base_url=%s", demo_url)
    try:
        settings = read_settings(args, demo_url)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    if args.check_config:
        print("config ok", file=sys.stderr)
        return 0

    listen = args.listen or settings.config.server.listen
    try:
        exporter = Exporter(settings, listen)
    except StateError as exc:
        print(f"config error: collector.state_path: {exc}", file=sys.stderr)
        return 2
    if args.once:
        try:
            ok = exporter.poller.poll_once()
        except KeyboardInterrupt:
            return 130
        sys.stdout.write(generate_latest(exporter.metrics.registry).decode())
        exporter.ledger.close()
        return 0 if ok else 1
    return run(exporter, args)


def run(exporter: Exporter, args: argparse.Namespace) -> int:
    """Serve until SIGTERM or SIGINT; reload the configuration on SIGHUP."""
    wake = threading.Event()
    requests: list[int] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        requests.append(signum)
        wake.set()

    for handled in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(handled, on_signal)

    log.info(
        "starting version=%s base_url=%s",
        __version__,
        _without_userinfo(exporter.settings.base_url),
    )
    try:
        exporter.serve()
    except OSError as exc:
        log.error("cannot listen address=%s error=%r", exporter.listen, exc.strerror)
        return 2
    while True:
        wake.wait()
        wake.clear()
        while requests:
            signum = requests.pop(0)
            if signum == signal.SIGHUP:
                _reload(exporter, args)
            else:
                log.info("stopping signal=%s", signal.Signals(signum).name)
                exporter.stop()
                return 0


def _without_userinfo(url: str) -> str:
    """The URL as it may be logged: a `user:password@` part is cut out."""
    scheme, sep, rest = url.partition("://")
    host, at, path = rest.partition("/")
    return f"{scheme}{sep}{host.rpartition('@')[2]}{'/' if at else ''}{path}"


def _reload(exporter: Exporter, args: argparse.Namespace) -> None:
    try:
        settings = read_settings(args, exporter.settings.base_url if args.demo else None)
    except ConfigError as exc:
        log.error("reload refused, keeping the running configuration error=%r", str(exc))
        return
    except Exception:
        log.exception("reload refused on an unexpected error, keeping the running configuration")
        return
    exporter.reload(settings)


if __name__ == "__main__":
    sys.exit(main())
