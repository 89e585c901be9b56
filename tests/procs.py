"""Start and stop the exporter as a real process, the way an operator runs it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

LISTENING = re.compile(r"listening address=(\S+)")


@dataclass
class ExporterProcess:
    """A running exporter: its process, the URL it serves, and what it has logged."""

    proc: subprocess.Popen[str]
    base_url: str = ""
    lines: list[str] = field(default_factory=list)
    ready: threading.Event = field(default_factory=threading.Event)

    def log_text(self) -> str:
        return "".join(self.lines)

    def terminate(self, sig: int = signal.SIGTERM, timeout: float = 10) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout=timeout)


def _pump(exporter: ExporterProcess) -> None:
    assert exporter.proc.stderr is not None
    for line in exporter.proc.stderr:
        exporter.lines.append(line)
        match = LISTENING.search(line)
        if match and not exporter.ready.is_set():
            exporter.base_url = f"http://{match.group(1)}"
            exporter.ready.set()
    exporter.ready.set()


def spawn_exporter(args: Sequence[str], env: dict[str, str] | None = None) -> ExporterProcess:
    """Start `python -m exporter ARGS`; wait until it says where it listens."""
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.Popen(
        [sys.executable, "-m", "exporter", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=full_env,
        cwd=Path(__file__).resolve().parent.parent,
    )
    exporter = ExporterProcess(proc)
    threading.Thread(target=_pump, args=(exporter,), daemon=True).start()
    if not exporter.ready.wait(timeout=20) or not exporter.base_url:
        proc.kill()
        raise RuntimeError(f"exporter did not start: {exporter.log_text()}")
    return exporter


@contextmanager
def running_exporter(
    args: Sequence[str], env: dict[str, str] | None = None
) -> Iterator[ExporterProcess]:
    """The exporter on 127.0.0.1:0 for the block's duration; killed if it does not stop."""
    exporter = spawn_exporter(["--listen", "127.0.0.1:0", *args], env)
    try:
        yield exporter
    finally:
        if exporter.proc.poll() is None:
            exporter.proc.send_signal(signal.SIGTERM)
            try:
                exporter.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                exporter.proc.kill()
                exporter.proc.wait()
