"""The output dicts every door hands out (SGLang's format), built from a Req on the engine thread."""
from __future__ import annotations

import time
from typing import Any

from .errors import EngineUnavailableError
from .request import Req


def single_or_raise(out: dict) -> dict:
    """A lone request refused for its input (e.g. an unsupported schema: ValueError) or turned away
    (a server going down: EngineUnavailableError) raises instead of returning an abort; in a batch
    the abort is that request's output and the others run."""
    reason = out["meta_info"]["finish_reason"] or {}
    if reason.get("type") == "abort" and reason.get("status_code") == 400:
        raise ValueError(reason["message"])
    if reason.get("type") == "abort" and reason.get("status_code") == 503:
        raise EngineUnavailableError(reason["message"])
    return out


def make_output(req: Req, tokenizer: Any, delta: bool) -> dict[str, Any]:
    """SGLang's output dict. With `delta`, text / output_ids hold only what is new since the last call."""
    start = req.sent_ids if delta else 0  # with delta, logprobs too cover only the new tokens
    text, ids = (req.text[req.sent_text:], req.output_ids[start:]) if delta else (req.text, req.output_ids)
    if delta:
        if req.finish is None and req.params.stop:  # hold back what may be the start of a stop string
            text = text[: max(0, len(text) - max(map(len, req.params.stop)) + 1)]
        req.sent_text, req.sent_ids = req.sent_text + len(text), len(req.output_ids)
    now = time.perf_counter()
    meta: dict[str, Any] = {
        "id": req.rid, "prompt_tokens": len(req.prompt_ids), "completion_tokens": len(req.output_ids),
        "cached_tokens": req.hit_len, "finish_reason": req.finish,
        "e2e_latency": now - req.arrival,
    }
    if req.params.return_logprob:
        decode = (lambda t: tokenizer.decode([t]))
        fmt = lambda lps: [[lp, t, decode(t)] for lp, t in lps]  # noqa: E731
        meta["output_token_logprobs"] = fmt(req.output_logprobs[start:])
        meta["output_top_logprobs"] = [fmt(top) for top in req.output_top[start:]]
        if req.params.logprob_start_len >= 0 and start == 0:
            meta["input_token_logprobs"] = fmt(req.input_logprobs)
            meta["input_top_logprobs"] = [fmt(top) for top in req.input_top]
    return {"text": text, "output_ids": list(ids), "meta_info": meta}
