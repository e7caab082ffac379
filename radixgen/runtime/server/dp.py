"""`radixgen serve --dp N`: N worker servers on loopback ports behind SGLang's router (the PyPI
package sglang-router, a Rust binary; cache-aware routing by default) on --host / --port.

We write no router and no scheduler: this module starts the processes, watches them and stops
them together. Each worker is a plain `radixgen serve` on 127.0.0.1 with the machine's threads split
between the workers (and, without --max-total-tokens, its share of --mem-fraction-static). A worker
that exits is restarted on its port, up to MAX_RESTARTS times, each time with a log line; the
router's retries and health checks send requests to the others meanwhile. SIGTERM / SIGINT stop the
router first (no new requests), then the workers (each drains for --graceful-timeout-s), then
SIGKILL whatever is left. Children run in sessions of their own, so a terminal's Ctrl-C reaches
them once, through us, and on Linux they get SIGTERM if this process dies without stopping them.
"""
from __future__ import annotations

import ctypes
import dataclasses
import logging
import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

import httpx

from radixgen.runtime.config import EngineConfig

from .args import ServerConfig
from .launch import free_port

log = logging.getLogger("radixgen.dp")
INSTALL_HINT = "radixgen serve --dp needs SGLang's router: pip install 'radixgen[router]'"
MAX_RESTARTS = 5              # per worker; past it the worker stays down and the others serve
STARTUP_TIMEOUT_S = 600.0     # model load of every worker (they load at once, sharing the cores)
POLL_S = 0.5
ROUTER_LOG_LEVELS = {"debug": "debug", "info": "warn", "warning": "warn", "error": "error"}


def router_available() -> bool:
    """Whether sglang-router's compiled router imports (its Python launcher alone cannot route)."""
    try:
        import sglang_router.sglang_router_rs  # noqa: F401
    except ImportError:
        return False
    return True


def cli_flags(config: object, skip: set[str]) -> list[str]:
    """The flags that rebuild `config` (a config dataclass) in a child: one per non-default field."""
    defaults, flags = type(config)(), []
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if f.name in skip or value is None or value == getattr(defaults, f.name):
            continue
        flag = "--" + f.name.replace("_", "-")
        if isinstance(value, bool):
            flags.append(flag if value else "--no-" + f.name.replace("_", "-"))
        else:
            flags += [flag, str(value)]
    return flags


def worker_engine(engine: EngineConfig, dp: int) -> EngineConfig:
    """One worker's share: the threads split evenly (at least one each), and the KV pool's share of
    memory when it is sized by fraction (N workers each taking the whole fraction would take N x)."""
    threads = max(1, (engine.num_threads or os.cpu_count() or 1) // dp)
    share = engine.mem_fraction_static if engine.max_total_tokens is not None else engine.mem_fraction_static / dp
    return dataclasses.replace(engine, num_threads=threads, mem_fraction_static=share)


def worker_command(server: ServerConfig, engine: EngineConfig, port: int) -> list[str]:
    own = cli_flags(server, skip={"host", "port", "dp", "router_policy", "router_args"})
    return [sys.executable, "-m", "radixgen.runtime.server", "--host", "127.0.0.1", "--port", str(port),
            *own, *cli_flags(engine, skip=set())]


def router_command(server: ServerConfig, worker_urls: list[str], metrics_port: int) -> list[str]:
    """sglang-router's own launcher; flags checked against sglang-router 0.3.2's --help. Its
    Prometheus exporter always listens (default 0.0.0.0:29000, taken by any second router), so it
    gets a free loopback port."""
    cmd = [sys.executable, "-m", "sglang_router.launch_router", "--host", server.host, "--port", str(server.port),
           "--worker-urls", *worker_urls, "--policy", server.router_policy,
           "--prometheus-host", "127.0.0.1", "--prometheus-port", str(metrics_port),
           "--max-payload-size", str(server.max_body_bytes),
           "--shutdown-grace-period-secs", str(int(server.graceful_timeout_s)),
           "--log-level", ROUTER_LOG_LEVELS[server.log_level]]
    if server.api_key:  # the router checks clients' keys and sends the same key to the workers
        cmd += ["--api-key", server.api_key]
    return cmd + shlex.split(server.router_args or "")  # the user's flags last: they win


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the supervisor dies (Linux prctl PR_SET_PDEATHSIG),
    so a SIGKILLed supervisor leaves no orphan holding a model and a port."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)


def spawn(cmd: list[str]) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(cmd, env=env, start_new_session=True, preexec_fn=_die_with_parent)


@dataclass
class Child:
    """One supervised process: a worker (restarted when it exits) or the router."""
    name: str
    url: str
    cmd: list[str]
    proc: subprocess.Popen | None = None
    restarts: int = 0
    ready: bool = False

    def start(self) -> None:
        self.proc, self.ready = spawn(self.cmd), False

    def exit_code(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def healthy(self, path: str, headers: dict[str, str]) -> bool:
        try:
            return httpx.get(self.url + path, headers=headers, timeout=2).status_code == 200
        except httpx.TransportError:
            return False


def _connect_host(host: str) -> str:
    """Where this machine reaches a server bound to `host` (0.0.0.0 / :: are not addresses to call)."""
    host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    return f"[{host}]" if ":" in host else host


def _distinct_ports(n: int) -> list[int]:
    ports: set[int] = set()
    while len(ports) < n:
        ports.add(free_port())
    return sorted(ports)


class Supervisor:
    """Starts the workers, then the router; watches them; stops them together."""

    def __init__(self, server: ServerConfig, engine: EngineConfig):
        self.server, self.stop_signal = server, None
        self.headers = {"Authorization": f"Bearer {server.api_key}"} if server.api_key else {}
        share = worker_engine(engine, server.dp)
        self.workers = [Child(f"worker {i}", f"http://127.0.0.1:{port}", worker_command(server, share, port))
                        for i, port in enumerate(_distinct_ports(server.dp))]
        self.metrics_port = free_port()
        self.router = Child("router", f"http://{_connect_host(server.host)}:{server.port}",
                            router_command(server, [w.url for w in self.workers], self.metrics_port))
        self.threads = share.num_threads
        if (engine.num_threads or os.cpu_count() or 1) < server.dp:
            log.warning(f"{server.dp} workers on fewer threads than that: each gets 1 and they share cores")

    def run(self) -> int:
        """-> the exit status: 0 when stopped by a signal (in self.stop_signal), 1 on a failure."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        try:
            if not self._start():
                return 0 if self.stop_signal else 1
            return self._watch()
        finally:
            self._stop_all()

    def _on_signal(self, sig: int, frame: object) -> None:
        if self.stop_signal is None:
            log.info("stopping the router and the workers", extra={"fields": {"signal": signal.Signals(sig).name}})
        self.stop_signal = sig

    def _start(self) -> bool:
        log.info("starting workers", extra={"fields": {"workers": [w.url for w in self.workers],
                                                       "threads_each": self.threads}})
        for w in self.workers:
            w.start()
        if not self._wait_ready(self.workers, "/health", STARTUP_TIMEOUT_S):
            return False
        self.router.start()
        if not self._wait_ready([self.router], "/readiness", 120.0):
            return False
        log.info("serving", extra={"fields": {"url": f"http://{self.server.host}:{self.server.port}",
                                              "router_policy": self.server.router_policy, "workers": len(self.workers),
                                              "router_metrics": f"http://127.0.0.1:{self.metrics_port}/metrics"}})
        return True

    def _wait_ready(self, children: list[Child], path: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.stop_signal is None and time.monotonic() < deadline:
            for c in children:
                if (code := c.exit_code()) is not None:
                    log.error(f"{c.name} exited with code {code} before it was ready; see its output above")
                    return False
                c.ready = c.ready or c.healthy(path, self.headers)
            if all(c.ready for c in children):
                return True
            time.sleep(POLL_S)
        if self.stop_signal is None:
            log.error(f"not ready after {timeout:.0f} s: {', '.join(c.name for c in children if not c.ready)}")
        return False

    def _watch(self) -> int:
        while self.stop_signal is None:
            if (code := self.router.exit_code()) is not None:
                log.error(f"the router exited with code {code}; stopping the workers")
                return 1
            for w in self.workers:
                self._check_worker(w)
            if all(w.proc is None for w in self.workers):
                log.error("every worker is down; stopping")
                return 1
            time.sleep(POLL_S)
        return 0

    def _check_worker(self, w: Child) -> None:
        """Restart a worker that exited (logged each time); say when it answers again."""
        code = w.exit_code()
        if w.proc is None:
            return  # given up on
        if code is None:
            if not w.ready and w.healthy("/health", self.headers):
                w.ready = True
                log.info(f"{w.name} is back", extra={"fields": {"url": w.url, "restarts": w.restarts}})
            return
        if w.restarts >= MAX_RESTARTS:
            log.error(f"{w.name} ({w.url}) exited with code {code} after {w.restarts} restarts; leaving it down, "
                      "the router sends its requests to the other workers")
            w.proc = None
            return
        w.restarts += 1
        log.error(f"{w.name} ({w.url}) exited with code {code}; restarting it ({w.restarts} of {MAX_RESTARTS})")
        w.start()

    def _stop_all(self) -> None:
        """SIGTERM the router and every worker at once (each drains on its own), SIGKILL what is left."""
        alive = [c for c in (self.router, *self.workers) if c.exit_code() is None and c.proc is not None]
        for c in alive:
            c.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.server.graceful_timeout_s + 15.0
        for c in alive:
            try:
                c.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error(f"{c.name} did not stop in time; killing it")
                c.proc.kill()
                c.proc.wait()
        log.info("stopped", extra={"fields": {"processes": len(alive)}})


def run_dp(server: ServerConfig, engine: EngineConfig) -> None:
    """`radixgen serve --dp N`: blocks until SIGTERM / SIGINT or a failure. Like the single server,
    ends a signalled stop by re-raising the signal, so the exit status says what stopped it."""
    if not router_available():
        sys.exit(f"radixgen: error: {INSTALL_HINT}")
    supervisor = Supervisor(server, engine)
    code = supervisor.run()
    if supervisor.stop_signal is not None:
        signal.signal(supervisor.stop_signal, signal.SIG_DFL)
        os.kill(os.getpid(), supervisor.stop_signal)
    sys.exit(code)
