"""`sgl.Runtime`: a `radixgen serve` subprocess on a free loopback port, and a RuntimeEndpoint to it
(SGLang's Runtime, which programs pass to set_default_backend)."""
from __future__ import annotations

from typing import Any

from radixgen.runtime.server.launch import launch_server

from .runtime_endpoint import RuntimeEndpoint


class Runtime:
    def __init__(self, model_path: str | None = None, **server_args: Any) -> None:
        """`server_args` are `radixgen serve` flags by their Python names (max_total_tokens=20000 is
        --max-total-tokens 20000; True is a bare flag). An unknown one fails the start with the
        server's own message. Stop it with shutdown() or a `with` block."""
        flags = ["--model", model_path] if model_path else []
        for key, value in server_args.items():
            if value is None or value is False:
                continue
            flags.append("--" + key.replace("_", "-"))
            if value is not True:
                flags.append(str(value))
        self._server = launch_server(flags)
        self.url = self._server.url
        self.endpoint = RuntimeEndpoint(self.url)

    def shutdown(self) -> None:
        self.endpoint.close()
        self._server.stop()

    def __enter__(self) -> "Runtime":
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
