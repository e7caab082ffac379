"""Start a radixgen server subprocess on a free loopback port for a benchmark (shared by the benches)."""
from __future__ import annotations

import socket
import subprocess
import sys
import time

import httpx


def start_server(flags: list[str], timeout_s: float = 300) -> tuple[subprocess.Popen, str]:
    """Returns (process, base url) once /health answers; raises SystemExit if it dies or times out."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "radixgen.runtime.server", "--port", str(port), "--log-level", "warning", *flags]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with {proc.returncode}: {' '.join(cmd)}")
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.5)
    proc.kill()
    raise SystemExit("the server did not come up in time")
