"""The command line: flags built from the config dataclasses, defaults kept in one place."""
from __future__ import annotations

import dataclasses

import pytest

from radixgen.runtime.config import EngineConfig
from radixgen.runtime.server import ServerConfig, parse_args


def test_defaults_bind_loopback_and_come_from_the_dataclasses() -> None:
    server, engine = parse_args([])
    assert server == ServerConfig() and server.host == "127.0.0.1" and server.api_key is None
    # the one default the server sets apart from the engine's: a bounded waiting queue
    assert engine == EngineConfig(max_queued_requests=4 * EngineConfig().max_running_requests)


def test_flags_map_onto_the_configs() -> None:
    server, engine = parse_args(["--port", "1234", "--api-key", "k", "--model-path", "m.gguf",
                                 "--max-total-tokens", "5000", "--dtype", "bfloat16", "--disable-radix-cache",
                                 "--max-running-requests", "8", "--mem-fraction-static", "0.1"])
    assert (server.port, server.api_key) == (1234, "k")
    assert engine == EngineConfig(model="m.gguf", max_total_tokens=5000, dtype="bfloat16",
                                  disable_radix_cache=True, max_running_requests=8, mem_fraction_static=0.1,
                                  max_queued_requests=32)
    assert ServerConfig(**{**dataclasses.asdict(server)}).public()["api_key"] == "***"


def test_every_engine_field_has_a_flag() -> None:
    from radixgen.runtime.server import build_parser
    dests = {a.dest for a in build_parser()._actions}
    assert {f.name for f in dataclasses.fields(EngineConfig)} <= dests
    assert {f.name for f in dataclasses.fields(ServerConfig)} <= dests


@pytest.mark.parametrize("argv", [["--page-size", "0"], ["--dtype", "bf16"], ["--bogus"], ["--port", "70000"],
                                  ["--max-total-tokens", "lots"], ["--api-key", ""]])
def test_bad_flags_exit_with_usage(argv: list[str], capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        parse_args(argv)
    assert exc.value.code == 2 and "error" in capsys.readouterr().err
