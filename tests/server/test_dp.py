"""`radixgen serve --dp N`: workers behind sglang-router, started, supervised and stopped as one.

The fast tests check the flags each worker gets and the message without the router; the slow one
starts `radixgen serve --dp 2` (on the tiny model: the point is the processes), sends requests
through it, kills a worker and sees it restarted and logged, then SIGTERMs it and checks that no
process is left behind."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from radixgen.runtime.server.args import parse_args
from radixgen.runtime.server.dp import INSTALL_HINT, Supervisor, router_available, worker_engine
from radixgen.runtime.server.launch import free_port

KEY = "dp-key"
AUTH = {"Authorization": f"Bearer {KEY}"}


def test_worker_flags_rebuild_the_worker_config() -> None:
    server, engine = parse_args(["--dp", "2", "--port", "31234", "--api-key", KEY, "--num-threads", "4",
                                 "--disable-radix-cache", "--dtype", "float32", "--graceful-timeout-s", "5",
                                 "--router-args", "--balance-abs-threshold 8"])
    sup = Supervisor(server, engine)
    assert len(sup.workers) == 2 and len({w.url for w in sup.workers}) == 2
    w_server, w_engine = parse_args(sup.workers[0].cmd[3:])  # after `python -m radixgen.runtime.server`
    assert w_engine == worker_engine(engine, 2) and w_engine.num_threads == 2 and w_engine.disable_radix_cache
    assert w_engine.mem_fraction_static == engine.mem_fraction_static / 2  # the pool is sized by fraction
    assert (w_server.host, w_server.dp, w_server.api_key, w_server.graceful_timeout_s) == ("127.0.0.1", 1, KEY, 5.0)
    router = sup.router.cmd
    assert router[router.index("--policy") + 1] == "cache_aware" and router[router.index("--api-key") + 1] == KEY
    assert [router[router.index("--worker-urls") + 1 + i] for i in range(2)] == [w.url for w in sup.workers]
    assert router[-2:] == ["--balance-abs-threshold", "8"]  # --router-args: passed on as given, last


def test_bad_dp_values_are_refused() -> None:
    for flags in (["--dp", "0"], ["--router-policy", "nearest"]):
        with pytest.raises(SystemExit) as exc:
            parse_args(flags)
        assert exc.value.code == 2


def test_dp_without_the_router_says_how_to_install_it() -> None:
    code = ("import sys; sys.modules['sglang_router'] = None; "  # as if sglang-router were not installed
            "from radixgen.cli import main; main(['serve', '--dp', '2'])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 1 and "pip install 'radixgen[router]'" in out.stderr, out.stderr


def wait_for(predicate, what: str, log: Path, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what}: not after {timeout:.0f} s\n{log.read_text(errors='replace')[-3000:]}"
        time.sleep(0.5)


def answers(url: str) -> bool:
    try:
        r = httpx.post(url + "/generate", headers=AUTH, timeout=60,
                       json={"text": "Hello", "sampling_params": {"max_new_tokens": 4, "temperature": 0}})
        return r.status_code == 200 and r.json()["meta_info"]["completion_tokens"] == 4
    except httpx.TransportError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not router_available(), reason=f"sglang-router's binary cannot run here ({INSTALL_HINT})")
def test_dp_serves_restarts_and_stops_together(tiny_dir: str, tmp_path: Path) -> None:
    port, log = free_port(), tmp_path / "dp.log"
    cmd = [sys.executable, "-m", "radixgen", "serve", "--dp", "2", "--port", str(port), "--api-key", KEY,
           "--model", tiny_dir, "--max-total-tokens", "2000", "--skip-warmup", "--log-format", "text",
           "--graceful-timeout-s", "5"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: "radixgen.dp: serving" in log.read_text(errors="replace"), "serving", log)
        assert answers(url)
        chat = httpx.post(url + "/v1/chat/completions", headers=AUTH, timeout=60,
                          json={"model": "default", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3})
        assert chat.status_code == 200 and chat.json()["usage"]["completion_tokens"] == 3
        assert httpx.post(url + "/generate", json={"text": "Hi"}, timeout=30).status_code == 401  # the key is forwarded

        sup = psutil.Process(proc.pid)
        workers = [p for p in sup.children() if "radixgen.runtime.server" in p.cmdline()]
        assert len(workers) == 2 and len(sup.children()) == 3  # two workers and the router
        workers[0].kill()
        wait_for(lambda: "worker 0" in log.read_text() and "restarting it (1 of 5)" in log.read_text(), "restart", log)
        wait_for(lambda: "worker 0 is back" in log.read_text(), "worker back", log)
        wait_for(lambda: answers(url), "answering after the restart", log, timeout=60)

        family = sup.children(recursive=True)
        assert len([p for p in sup.children() if "radixgen.runtime.server" in p.cmdline()]) == 2
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == -signal.SIGTERM  # re-raised, as the single server does
        gone, alive = psutil.wait_procs(family, timeout=10)
        assert not alive, f"left behind: {[(p.pid, p.name()) for p in alive]}"
        with pytest.raises(httpx.TransportError):
            httpx.get(url + "/health", timeout=2)
    finally:
        if proc.poll() is None:
            proc.kill()
