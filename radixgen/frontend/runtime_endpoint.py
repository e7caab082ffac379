"""RuntimeEndpoint: programs over HTTP, through the SGLang-native `POST /generate` of a radixgen
server (or any SGLang server). Text is tokenized by the server; the client loads the same tokenizer
only to read the chat template and to place `select`'s scoring boundaries."""
from __future__ import annotations

import json
from typing import Any, Iterator

import httpx

from radixgen.runtime.sampling_params import SamplingParams

from .backend import Backend, Prompt
from .chat_template import RoleTemplate

_DEFAULTS = SamplingParams().to_dict()
# These travel at the top of the request body in SGLang's contract, not in sampling_params.
_TOP_LEVEL = ("return_logprob", "logprob_start_len", "top_logprobs_num")


class RuntimeEndpoint(Backend):
    def __init__(self, base_url: str, api_key: str | None = None, tokenizer: Any = None,
                 timeout: float | None = 600.0):
        """`tokenizer`: a transformers tokenizer or its path; by default the server's model path
        (from `GET /get_model_info`), which must be readable here."""
        self.base_url = base_url.rstrip("/")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout)
        self.model_info: dict[str, Any] = self._check(self._client.get("/get_model_info")).json()
        if tokenizer is None or isinstance(tokenizer, str):
            from transformers import AutoTokenizer  # heavy: only when the endpoint is created

            path = tokenizer or self.model_info.get("tokenizer_path") or self.model_info["model_path"]
            tokenizer = AutoTokenizer.from_pretrained(path)
        self.tokenizer = tokenizer
        self.template = RoleTemplate.from_tokenizer(tokenizer)

    def _generate(self, prompts: list[Prompt], params: list[SamplingParams]) -> list[dict[str, Any]]:
        body = {"text" if isinstance(prompts[0], str) else "input_ids": prompts, **_fields(params)}
        out = self._check(self._client.post("/generate", json=body)).json()
        return out if isinstance(out, list) else [out]

    def _generate_stream(self, prompt: str, params: SamplingParams) -> Iterator[dict[str, Any]]:
        body = {"text": prompt, **_fields([params]), "stream": True}
        with self._client.stream("POST", "/generate", json=body) as response:
            if response.status_code != 200:
                response.read()
                self._check(response)
            sent = 0
            for line in response.iter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[len("data:"):].strip()
                if data == "[DONE]":
                    return
                out = json.loads(data)
                if "error" in out:
                    raise RuntimeError(f"server error while streaming: {out['error']}")
                text = out["text"]  # cumulative in SGLang's stream: hand out the new part only
                yield {**out, "text": text[sent:]}
                sent = len(text)

    def flush_cache(self) -> bool:
        return self._client.post("/flush_cache").status_code == 200

    def get_model_name(self) -> str:
        return str(self.model_info["model_path"])

    def get_server_info(self) -> dict[str, Any]:
        return self._check(self._client.get("/server_info")).json()

    def close(self) -> None:
        self._client.close()

    @staticmethod
    def _check(response: httpx.Response) -> httpx.Response:
        if response.status_code != 200:
            raise RuntimeError(f"{response.request.method} {response.request.url} failed with "
                               f"{response.status_code}: {response.text[:500]}")
        return response


def _fields(params: list[SamplingParams]) -> dict[str, Any]:
    """The request body's sampling fields. Only values that differ from the defaults are sent, so any
    SGLang server understands them; sampling_params is a list only when the requests differ."""
    dicts = [_sampling_dict(p) for p in params]
    body: dict[str, Any] = {"sampling_params": dicts[0] if all(d == dicts[0] for d in dicts) else dicts}
    for key in _TOP_LEVEL:
        value = getattr(params[0], key)
        assert all(getattr(p, key) == value for p in params), f"{key} differs within one request"
        if value != _DEFAULTS[key]:
            body[key] = value
    if params[0].return_logprob:
        body["return_text_in_logprobs"] = True  # SGLang's servers leave the token text out otherwise
    return body


def _sampling_dict(params: SamplingParams) -> dict[str, Any]:
    out = {k: v for k, v in params.to_dict().items() if k not in _TOP_LEVEL and v != _DEFAULTS[k]}
    if isinstance(out.get("json_schema"), dict):
        out["json_schema"] = json.dumps(out["json_schema"])  # SGLang's servers take the schema as a string
    return out
