"""Command-line flags, built from the config dataclasses so that every default lives in one place
(mini-sglang's `server/args.py` does the same with its ServerArgs).

Engine flags are `runtime/config.py`'s `add_cli_args` (one per EngineConfig field, as every
`radixgen` command has them); the server's own come from `ServerConfig` here, their help from the
fields' comments.
"""
from __future__ import annotations

import argparse
import dataclasses
import inspect
import re
from dataclasses import dataclass
from typing import Any

from radixgen.runtime.config import EngineConfig, add_cli_args, from_cli_args

LOG_FORMATS = ("json", "text")
QUEUE_PER_RUNNING = 4  # the server's default --max-queued-requests: 4 x --max-running-requests
LOG_LEVELS = ("debug", "info", "warning", "error")
ROUTER_POLICIES = ("cache_aware", "round_robin", "power_of_two", "random")  # sglang-router's --policy


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"             # loopback unless told otherwise: the server has no TLS
    port: int = 30000
    api_key: str | None = None          # when set, every route but /health needs `Authorization: Bearer KEY`
    served_model_name: str | None = None  # the name /v1/models lists; None: the model's directory name
    max_body_bytes: int = 4 * 1024 * 1024  # larger request bodies get 413 before any parsing
    graceful_timeout_s: float = 30.0    # on SIGTERM, in-flight requests get this long, then are aborted
    health_stall_s: float = 60.0        # /health answers 503 once the engine loop has not gone round this long
    log_level: str = "info"
    log_format: str = "json"            # json: one object per line (structured); text: for humans
    dp: int = 1                         # > 1: this many workers behind sglang-router on --port (pip install 'radixgen[router]')
    router_policy: str = "cache_aware"  # with --dp: sglang-router's policy (cache_aware sends a prompt where its prefix is cached)
    router_args: str | None = None      # with --dp: more sglang-router flags, as one string (e.g. "--balance-abs-threshold 8")

    def __post_init__(self) -> None:
        if not 0 <= self.port < 65536:
            raise ValueError(f"port must be in [0, 65535], got {self.port}")
        if self.max_body_bytes < 1024:
            raise ValueError(f"max_body_bytes must be >= 1024, got {self.max_body_bytes}")
        if self.health_stall_s <= 0:
            raise ValueError(f"health_stall_s must be > 0, got {self.health_stall_s}")
        if self.graceful_timeout_s < 0:
            raise ValueError(f"graceful_timeout_s must be >= 0, got {self.graceful_timeout_s}")
        if self.log_format not in LOG_FORMATS:
            raise ValueError(f"log_format must be one of {', '.join(LOG_FORMATS)}; got {self.log_format!r}")
        if self.log_level not in LOG_LEVELS:
            raise ValueError(f"log_level must be one of {', '.join(LOG_LEVELS)}; got {self.log_level!r}")
        if not isinstance(self.dp, int) or self.dp < 1:
            raise ValueError(f"dp must be a positive integer, got {self.dp!r}")
        if self.router_policy not in ROUTER_POLICIES:
            raise ValueError(f"router_policy must be one of {', '.join(ROUTER_POLICIES)}; got {self.router_policy!r}")
        if self.api_key is not None and not self.api_key:
            raise ValueError("api_key must not be empty (leave it out to disable auth)")

    def public(self) -> dict[str, Any]:
        """The settings with the API key hidden, for /server_info."""
        out = dataclasses.asdict(self)
        out["api_key"] = None if self.api_key is None else "***"
        return out


CHOICES = {"log_format": LOG_FORMATS, "log_level": LOG_LEVELS, "router_policy": ROUTER_POLICIES}


def _arg_type(annotation: str) -> type:
    """The scalar type of a field from its (string) annotation, e.g. 'int | None' -> int."""
    for name, kind in (("bool", bool), ("int", int), ("float", float)):
        if annotation.split(" | ")[0] == name:
            return kind
    return str


def field_comments(cls: type) -> dict[str, str]:
    """The trailing `# comment` of each field in the class source: the flags' help says what the
    dataclass says, without a second copy of the text."""
    found = re.findall(r"^\s+(\w+):[^#\n]*#\s*(.+)$", inspect.getsource(cls), flags=re.MULTILINE)
    return dict(found)


def add_server_args(parser: argparse.ArgumentParser) -> None:
    """One flag per ServerConfig field."""
    group, comments = parser.add_argument_group("server"), field_comments(ServerConfig)
    for f in dataclasses.fields(ServerConfig):
        help_text = f"{comments.get(f.name, '')} (default: {f.default})".strip()
        flag, kind = f"--{f.name.replace('_', '-')}", _arg_type(str(f.type))
        if kind is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default, help=help_text)
        else:
            group.add_argument(flag, type=kind, default=f.default, choices=CHOICES.get(f.name), help=help_text)


def build_parser(prog: str = "radixgen serve") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="Serve a model over HTTP: the OpenAI API "
                                     "and SGLang's native /generate API.")
    add_server_args(parser)
    engine = parser.add_argument_group("engine")
    add_cli_args(engine)
    # SGLang's spelling of --model, so launch commands written for it keep working
    engine.add_argument("--model-path", dest="model", help=argparse.SUPPRESS)
    return parser


def parse_args(argv: list[str], prog: str = "radixgen serve") -> tuple[ServerConfig, EngineConfig]:
    """-> (server config, engine config), both validated before the slow model load.
    A bad value exits with status 2 and a message, as argparse does for its own errors."""
    parser = build_parser(prog)
    ns = parser.parse_args(argv)
    try:
        server = ServerConfig(**{f.name: getattr(ns, f.name) for f in dataclasses.fields(ServerConfig)})
        engine = from_cli_args(ns)
        if engine.max_queued_requests is None:  # a server queue is bounded: past it, 503 + Retry-After
            engine = dataclasses.replace(engine, max_queued_requests=QUEUE_PER_RUNNING * engine.max_running_requests)
        return server, engine
    except ValueError as exc:
        parser.error(str(exc))
