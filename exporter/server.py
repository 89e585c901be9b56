"""Serve /metrics, /healthz, /readyz and a landing page over HTTP or HTTPS.

An optional web config file, in the format of Prometheus' exporter-toolkit, turns on TLS
(`tls_server_config`: `cert_file`, `key_file`, optional `client_ca_file` and
`client_auth_type`) and basic auth (`basic_auth_users`: user name to bcrypt hash). Health
endpoints follow the poll loop's thread, never the Infobip API: as a sidecar, a failing probe
would restart the whole pod for an outage that is not the pod's.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import logging
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import bcrypt
import yaml
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from exporter import __version__

log = logging.getLogger(__name__)

StartResponse = Callable[..., Any]
Environ = dict[str, Any]

LANDING = """<!doctype html>
<html><head><title>Infobip voice exporter</title></head>
<body><h1>Infobip voice exporter {version}</h1>
<p>Prometheus metrics of Infobip voice-message logs.</p>
<ul><li><a href="metrics">/metrics</a></li><li><a href="healthz">/healthz</a></li>
<li><a href="readyz">/readyz</a></li></ul></body></html>
"""


_BCRYPT = re.compile(r"\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}")


class WebConfigError(Exception):
    """The web config file cannot be used; the message names the key."""


@dataclass(frozen=True)
class WebConfig:
    cert_file: Path | None = None
    key_file: Path | None = None
    client_ca_file: Path | None = None
    client_auth_type: str = "NoClientCert"
    users: dict[str, bytes] = field(default_factory=dict)

    def ssl_context(self) -> ssl.SSLContext | None:
        if self.cert_file is None:
            return None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.cert_file, self.key_file)
        if self.client_ca_file is not None:
            context.load_verify_locations(self.client_ca_file)
            required = self.client_auth_type == "RequireAndVerifyClientCert"
            context.verify_mode = ssl.CERT_REQUIRED if required else ssl.CERT_OPTIONAL
        return context


def load_web_config(path: Path) -> WebConfig:
    """Read an exporter-toolkit style web config file."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise WebConfigError(f"server.web_config_file: cannot read {path}: {exc}") from exc
    if not isinstance(raw, dict):
        raise WebConfigError("server.web_config_file: expected a mapping")
    unknown = set(raw) - {"tls_server_config", "basic_auth_users", "http_server_config"}
    if unknown:
        raise WebConfigError(f"web config: {sorted(unknown)[0]}: unknown key")

    tls = raw.get("tls_server_config") or {}
    users = raw.get("basic_auth_users") or {}
    if not isinstance(tls, dict) or not isinstance(users, dict):
        raise WebConfigError("web config: tls_server_config and basic_auth_users are mappings")
    allowed = {"cert_file", "key_file", "client_ca_file", "client_auth_type", "min_version"}
    for key in set(tls) - allowed:
        raise WebConfigError(f"web config: tls_server_config.{key}: unknown key")
    if bool(tls.get("cert_file")) != bool(tls.get("key_file")):
        raise WebConfigError(
            "web config: tls_server_config.key_file: cert_file and key_file go together"
        )
    auth_type = tls.get("client_auth_type", "NoClientCert")
    if auth_type not in ("NoClientCert", "RequireAndVerifyClientCert", "VerifyClientCertIfGiven"):
        raise WebConfigError(
            f"web config: tls_server_config.client_auth_type: {auth_type!r} is not supported"
        )

    if auth_type != "NoClientCert" and not tls.get("client_ca_file"):
        # Without a CA nothing can be verified: the policy would silently let every client in.
        raise WebConfigError(
            f"web config: tls_server_config.client_ca_file: required by {auth_type}"
        )
    for user, hashed in users.items():
        # The value is not quoted: a plain password put here by mistake must not be logged.
        if not _BCRYPT.fullmatch(str(hashed)):
            raise WebConfigError(f"web config: basic_auth_users.{user}: not a bcrypt hash")

    def resolve(name: str) -> Path | None:
        value = tls.get(name)
        return (path.parent / value) if value else None

    web = WebConfig(
        cert_file=resolve("cert_file"),
        key_file=resolve("key_file"),
        client_ca_file=resolve("client_ca_file"),
        client_auth_type=auth_type,
        users={str(user): str(hashed).encode() for user, hashed in users.items()},
    )
    try:
        web.ssl_context()
    except (OSError, ssl.SSLError) as exc:
        raise WebConfigError(f"web config: tls_server_config: {exc}") from exc
    return web


class BasicAuth:
    """Checks credentials against bcrypt hashes, remembering answers to spare the CPU."""

    def __init__(self, users: dict[str, bytes]) -> None:
        self.users = users
        self._checked: dict[bytes, bool] = {}
        self._lock = threading.Lock()

    def allows(self, header: str | None) -> bool:
        if not header or not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return False
        hashed = self.users.get(user)
        if hashed is None:
            return False
        # The cache key is a digest, so no password is kept in memory in clear.
        key = hashlib.sha256(f"{user}\0{password}".encode()).digest()
        with self._lock:
            known = self._checked.get(key)
        if known is None:
            known = bcrypt.checkpw(password.encode(), hashed)
            with self._lock:
                if len(self._checked) > 1000:
                    self._checked.clear()
                self._checked[key] = known
        return known


class Exposition:
    """Serves the registry, rendering it at most once a second per format.

    Rendering costs milliseconds of one core; with several scrapers at once (a Prometheus
    HA pair, a federation, someone's curl) they would queue behind each other. Scrapes in
    the same second share one rendering, and the first of them renders while the others
    wait for it rather than render again.
    """

    MAX_AGE = 1.0

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, bool], tuple[float, bytes]] = {}

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        encoder, content_type = choose_encoder(environ.get("HTTP_ACCEPT", ""))
        zipped = "gzip" in environ.get("HTTP_ACCEPT_ENCODING", "")
        key = (content_type, zipped)
        with self._lock:
            now = time.monotonic()
            cached = self._cache.get(key)
            if cached is not None and now - cached[0] < self.MAX_AGE:
                body = cached[1]
            else:
                body = encoder(self.registry)
                if zipped:
                    body = gzip.compress(body, compresslevel=6)
                self._cache[key] = (now, body)
        headers = [("Content-Type", content_type), ("Content-Length", str(len(body)))]
        if zipped:
            headers.append(("Content-Encoding", "gzip"))
        start_response("200 OK", headers)
        return [body]


class App:
    """The WSGI application: routes, auth, and the metrics exposition."""

    def __init__(
        self,
        registry: CollectorRegistry,
        alive: Callable[[], bool],
        auth: BasicAuth | None = None,
    ) -> None:
        self.exposition = Exposition(registry)
        self.alive = alive
        self.auth = auth

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        # The probes say nothing secret and a kubelet sends no password, so they stay open.
        guarded = path not in ("/healthz", "/readyz")
        auth = self.auth
        if guarded and auth is not None and not auth.allows(environ.get("HTTP_AUTHORIZATION")):
            start_response(
                "401 Unauthorized",
                [
                    ("Content-Type", "text/plain; charset=utf-8"),
                    ("WWW-Authenticate", 'Basic realm="infobip-voice-exporter"'),
                ],
            )
            return [b"Unauthorized\n"]
        if path == "/metrics":
            return self.exposition(environ, start_response)
        if path == "/healthz":
            ok = self.alive()
            return _text(
                start_response,
                "200 OK" if ok else "503 Service Unavailable",
                "ok\n" if ok else "poll loop stopped\n",
            )
        if path == "/readyz":
            return _text(start_response, "200 OK", "ready\n")
        if path in ("/", ""):
            start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
            return [LANDING.format(version=__version__).encode()]
        return _text(start_response, "404 Not Found", "not found\n")


def _text(start_response: StartResponse, status: str, body: str) -> list[bytes]:
    start_response(status, [("Content-Type", "text/plain; charset=utf-8")])
    return [body.encode()]


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    # socketserver's default backlog of 5 drops connections when many scrapers (or a
    # Prometheus HA pair plus probes) arrive at once; each drop costs a 1 s SYN retry.
    request_queue_size = 128
    tls: ssl.SSLContext | None = None

    def finish_request(self, request: Any, client_address: Any) -> None:
        # The TLS handshake runs here, in the connection's own thread, so a slow or silent
        # client cannot hold up every other scrape.
        if self.tls is not None:
            request.settimeout(10)
            request = self.tls.wrap_socket(request, server_side=True)
        super().finish_request(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("connection from %s failed", client_address[0], exc_info=True)


class _QuietHandler(WSGIRequestHandler):
    # Headers and body leave in separate writes; without this, delayed ACKs add 40 ms.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http " + format, *args)


class _V6Server(_Server):
    address_family = socket.AF_INET6


class HttpServer:
    """The exporter's web server, in a background thread."""

    def __init__(self, app: App, host: str, port: int) -> None:
        server_class = _V6Server if ":" in host else _Server
        self.app = app
        self.httpd = make_server(host, port, app, server_class, _QuietHandler)
        self.scheme = "http"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, args=(0.1,), name="http", daemon=True
        )

    @property
    def address(self) -> str:
        host, port = self.httpd.server_address[:2]
        name = host.decode() if isinstance(host, bytes) else host
        return f"[{name}]:{port}" if ":" in name else f"{name}:{port}"

    def secure(self, web: WebConfig) -> None:
        """Apply a web config: TLS and users take effect from the next connection on."""
        tls = web.ssl_context()
        self.app.auth = BasicAuth(web.users) if web.users else None
        self.httpd.tls = tls
        self.scheme = "https" if tls is not None else "http"

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
