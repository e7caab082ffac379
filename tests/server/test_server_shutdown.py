"""Graceful shutdown on SIGTERM, on a server of its own: new connections are refused, a request that
can finish within the grace period finishes whole, one that cannot is aborted, the engine stops."""
from __future__ import annotations

import signal
import threading
import time

import httpx
import pytest

from radixgen.runtime.server.launch import launch_server

pytestmark = pytest.mark.slow
GRACE_S = 8


def stream_lines(url: str, body: dict, lines: list, started: threading.Event) -> None:
    try:
        with httpx.stream("POST", url + "/generate", json=body, timeout=60) as r:
            for line in r.iter_lines():
                if line.startswith("data: "):
                    lines.append(line)
                    started.set()
    except httpx.HTTPError as exc:  # the long stream is cut when the grace period ends
        lines.append(f"cut: {type(exc).__name__}")
    started.set()


def start_stream(url: str, max_new_tokens: int) -> tuple[threading.Thread, list]:
    lines: list = []
    started = threading.Event()
    body = {"text": "Tell me a story.", "stream": True,
            "sampling_params": {"max_new_tokens": max_new_tokens, "ignore_eos": True}}
    worker = threading.Thread(target=stream_lines, args=(url, body, lines, started), daemon=True)
    worker.start()
    assert started.wait(60), "the stream produced nothing"
    return worker, lines


def test_sigterm_is_graceful(tmp_path) -> None:
    server = launch_server(["--max-total-tokens", "20000", "--graceful-timeout-s", str(GRACE_S)], tmp_path / "server.log")
    try:
        long_worker, long_lines = start_stream(server.url, 4000)
        short_worker, short_lines = start_stream(server.url, 12)
        server.proc.send_signal(signal.SIGTERM)
        refused = False
        for _ in range(30):  # the listening socket closes at once
            try:
                httpx.get(server.url + "/health", timeout=1)
            except httpx.TransportError:
                refused = True
                break
            time.sleep(0.1)
        assert refused, "new connections are still accepted after SIGTERM"
        short_worker.join(GRACE_S + 20)
        assert short_lines[-1] == "data: [DONE]", short_lines[-3:]  # finished whole within the grace period
        assert '"length", "length": 12' in short_lines[-2]
        long_worker.join(GRACE_S + 20)
        assert "[DONE]" not in long_lines[-1]  # cut off: aborted in the engine when the grace period ended
        assert server.proc.wait(30) == -signal.SIGTERM  # uvicorn re-raises the signal after shutting down
        log = server.log_path.read_text()
        assert "stream closed early" in log and "engine stopped" in log
    finally:
        server.stop()


def test_sigterm_turns_queued_requests_away_with_503(tiny_dir, tmp_path) -> None:
    """A request still waiting for the engine when SIGTERM comes is answered 503 at once (a retry
    elsewhere will serve it), not cut off when the graceful period ends."""
    server = launch_server(["--model", tiny_dir, "--dtype", "float32", "--max-total-tokens", "8000",
                            "--context-length", "1024", "--max-running-requests", "1",
                            "--graceful-timeout-s", str(GRACE_S)], tmp_path / "server.log", timeout=120)
    try:
        running_worker, _ = start_stream(server.url, 1000)  # holds the one running slot
        answer: list = []
        body = {"text": "queued", "sampling_params": {"max_new_tokens": 4}}
        queued = threading.Thread(target=lambda: answer.append(
            httpx.post(server.url + "/generate", json=body, timeout=60)), daemon=True)
        queued.start()
        for _ in range(100):
            if httpx.get(server.url + "/server_info", timeout=5).json()["stats"]["num_waiting"] == 1:
                break
            time.sleep(0.1)
        else:
            raise AssertionError("the second request never queued")
        sent = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        queued.join(30)
        assert answer and answer[0].status_code == 503, answer and answer[0].text
        assert time.monotonic() - sent < GRACE_S, "answered only when the graceful period ended"
        assert "shutting down" in answer[0].json()["error"]["message"]
        running_worker.join(GRACE_S + 20)
    finally:
        server.stop()
