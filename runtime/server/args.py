"""Command-line flags, built from the config dataclasses so that every default lives in one place.

Engine flags come from `EngineConfig`'s fields (`max_total_tokens` -> `--max-total-tokens`) and are
left out of the namespace unless given, so the dataclass keeps the only copy of each default
(mini-sglang's `server/args.py` does the same with its ServerArgs).
"""
from __future__ import annotations

import argparse
import dataclasses
import inspect
import re
from dataclasses import dataclass
from typing import Any

from radixgen.runtime.config import ATTENTION_BACKENDS, DTYPES, POLICIES, EngineConfig

LOG_FORMATS = ("json", "text")
LOG_LEVELS = ("debug", "info", "warning", "error")


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"             # loopback unless told otherwise: the server has no TLS
    port: int = 30000
    api_key: str | None = None          # when set, every route but /health needs `Authorization: Bearer KEY`
    served_model_name: str | None = None  # the name /v1/models lists; None: the model's directory name
    max_body_bytes: int = 4 * 1024 * 1024  # larger request bodies get 413 before any parsing
    graceful_timeout_s: float = 30.0    # on SIGTERM, in-flight requests get this long, then are aborted
    log_level: str = "info"
    log_format: str = "json"            # json: one object per line (structured); text: for humans

    def __post_init__(self) -> None:
        if not 0 <= self.port < 65536:
            raise ValueError(f"port must be in [0, 65535], got {self.port}")
        if self.max_body_bytes < 1024:
            raise ValueError(f"max_body_bytes must be >= 1024, got {self.max_body_bytes}")
        if self.graceful_timeout_s < 0:
            raise ValueError(f"graceful_timeout_s must be >= 0, got {self.graceful_timeout_s}")
        if self.log_format not in LOG_FORMATS:
            raise ValueError(f"log_format must be one of {', '.join(LOG_FORMATS)}; got {self.log_format!r}")
        if self.log_level not in LOG_LEVELS:
            raise ValueError(f"log_level must be one of {', '.join(LOG_LEVELS)}; got {self.log_level!r}")
        if self.api_key is not None and not self.api_key:
            raise ValueError("api_key must not be empty (leave it out to disable auth)")

    def public(self) -> dict[str, Any]:
        """The settings with the API key hidden, for /server_info."""
        out = dataclasses.asdict(self)
        out["api_key"] = None if self.api_key is None else "***"
        return out


CHOICES = {"dtype": DTYPES, "schedule_policy": POLICIES, "attention_backend": ATTENTION_BACKENDS,
           "log_format": LOG_FORMATS, "log_level": LOG_LEVELS}
# Other servers' spellings of a few flags, so commands written for SGLang / vLLM keep working.
FLAG_ALIASES = {"model": ["--model-path"], "context_length": ["--max-model-len"],
                "max_running_requests": ["--max-num-seqs"]}


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


def add_dataclass_args(parser: argparse.ArgumentParser, cls: type, group_title: str,
                       keep_defaults: bool) -> None:
    """One flag per field. With keep_defaults=False an absent flag is absent from the namespace."""
    group, comments = parser.add_argument_group(group_title), field_comments(cls)
    for f in dataclasses.fields(cls):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        flags = [f"--{f.name.replace('_', '-')}", *FLAG_ALIASES.get(f.name, [])]
        kind = _arg_type(str(f.type))
        extra: dict[str, Any] = {"dest": f.name, "help": f"{comments.get(f.name, '')} (default: {default})".strip()}
        extra["default"] = default if keep_defaults else argparse.SUPPRESS
        if kind is bool:
            group.add_argument(*flags, action=argparse.BooleanOptionalAction, **extra)
        else:
            group.add_argument(*flags, type=kind, choices=CHOICES.get(f.name), **extra)


def build_parser(prog: str = "radixgen serve") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="Serve a model over HTTP: the OpenAI API "
                                     "and SGLang's native /generate API.")
    add_dataclass_args(parser, ServerConfig, "server", keep_defaults=True)
    add_dataclass_args(parser, EngineConfig, "engine", keep_defaults=False)
    return parser


def parse_args(argv: list[str], prog: str = "radixgen serve") -> tuple[ServerConfig, dict[str, Any]]:
    """-> (server config, engine keyword arguments holding only the flags that were given).
    A bad value exits with status 2 and a message, as argparse does for its own errors."""
    parser = build_parser(prog)
    ns = vars(parser.parse_args(argv))
    server_names = {f.name for f in dataclasses.fields(ServerConfig)}
    engine_kwargs = {k: v for k, v in ns.items() if k not in server_names}
    try:
        server = ServerConfig(**{k: v for k, v in ns.items() if k in server_names})
        EngineConfig.from_kwargs(**engine_kwargs)  # validate now, before the slow model load
    except ValueError as exc:
        parser.error(str(exc))
    return server, engine_kwargs
