"""A scripted stand-in for the logs endpoint, served over a real socket on loopback."""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Answer:
    status: int = 200
    body: bytes = b'{"results": []}'
    headers: dict[str, str] = field(default_factory=dict)
    hold: threading.Event | None = None
    trickle: float = 0.0
    """Seconds between bytes of the body, for an answer that never quite arrives."""


@dataclass
class Seen:
    path: str
    headers: dict[str, str]


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that gave up first is what timeout tests want, not news."""


class FakeApi:
    """Answers each request with the next scripted `Answer`; the last one repeats."""

    def __init__(self, *answers: Answer) -> None:
        self.answers: deque[Answer] = deque(answers or [Answer()])
        self.seen: list[Seen] = []
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def do_GET(self) -> None:
                with fake.lock:
                    fake.seen.append(Seen(self.path, dict(self.headers.items())))
                    answer = fake.answers[0]
                    if len(fake.answers) > 1:
                        fake.answers.popleft()
                if answer.hold is not None:
                    answer.hold.wait(30)
                self.send_response(answer.status)
                headers = {"Content-Type": "application/json", **answer.headers}
                for key, value in headers.items():
                    self.send_header(key, value)
                if "Content-Length" in answer.headers:
                    # A promised length the body will not reach: hang up after it.
                    self.close_connection = True
                else:
                    self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                try:
                    if answer.trickle:
                        for byte in answer.body:
                            self.wfile.write(bytes([byte]))
                            time.sleep(answer.trickle)
                    else:
                        self.wfile.write(answer.body)
                except (BrokenPipeError, ConnectionResetError):
                    return  # the client gave up first, as a timeout test wants

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = _QuietServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def script(self, *answers: Answer) -> None:
        with self.lock:
            self.answers = deque(answers)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
