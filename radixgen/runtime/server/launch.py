"""Start `radixgen serve` as a subprocess on a free loopback port and wait until /health answers:
for tests, benchmarks and scripts that drive a real server (SGLang's `popen_launch_server`).

    with launch_server(["--max-total-tokens", "20000"]) as server:
        httpx.post(server.url + "/generate", json={"text": "Hi"})
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class ServerProcess:
    url: str
    proc: subprocess.Popen
    log_path: Path

    def log_tail(self, n: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM (the server drains), then SIGKILL after `timeout`; -> the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def __enter__(self) -> "ServerProcess":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def launch_server(flags: list[str], log_path: Path | str | None = None, timeout: float = 300.0,
                  env: dict[str, str] | None = None) -> ServerProcess:
    """Start the server with `flags` (any `radixgen serve` flag but --host / --port) and wait for
    /health. Its output goes to `log_path` (a temp file by default): a pipe nobody reads would fill
    up and block the server. Raises RuntimeError with the log's tail if it exits or times out."""
    port = free_port()
    if log_path is None:
        log_path = Path(tempfile.mkstemp(prefix="radixgen-server-", suffix=".log")[1])
    log_path = Path(log_path)
    cmd = [sys.executable, "-m", "radixgen.runtime.server", "--host", "127.0.0.1", "--port", str(port),
           "--log-format", "text", *flags]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})
    server = ServerProcess(f"http://127.0.0.1:{port}", proc, log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}:\n{server.log_tail()}")
        try:
            if httpx.get(server.url + "/health", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    server.stop()
    raise RuntimeError(f"the server did not come up in {timeout:.0f} s:\n{server.log_tail()}")
