"""Write a float32 copy of a GGUF file (default: the bundled SmolLM2 Q4_1) for llama.cpp.

    python bench/gguf_dequant.py [--src X.gguf] [--out bench/results/SmolLM2-135M-Instruct.F32.gguf]

Why: radixgen runs the bundled model as its Q4_1 weights dequantized to float32, while llama.cpp
on the Q4_1 file multiplies quantized weights by activations it quantizes to 8 bits. Under greedy
decoding a 135M model's path can flip on such small differences, which would mix numeric
divergence into a grammar comparison. With this file both engines use the same weights (the same
gguf.quants.dequantize that transformers' GGUF loader uses) in float32. Metadata (tokenizer, chat
template, hyper-parameters) is copied as is; only the tensor types and general.file_type change.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import gguf
import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def dequantize_gguf(src: Path, out: Path) -> None:
    reader = gguf.GGUFReader(src)
    arch = reader.fields[gguf.Keys.General.ARCHITECTURE].contents()
    writer = gguf.GGUFWriter(out, arch)
    for field in reader.fields.values():
        # GGUF.* are virtual (header) fields and the architecture is written by GGUFWriter itself
        if field.name == gguf.Keys.General.ARCHITECTURE or field.name.startswith("GGUF."):
            continue
        if field.name == gguf.Keys.General.FILE_TYPE:
            writer.add_file_type(gguf.LlamaFileType.ALL_F32)
            continue
        val_type = field.types[0]
        sub_type = field.types[-1] if val_type == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, field.contents(), val_type, sub_type=sub_type)
    for t in reader.tensors:
        # dequantize gives the numpy shape (ggml's ne reversed); float tensors come back as float32
        data = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
        writer.add_tensor(t.name, np.ascontiguousarray(data), raw_dtype=gguf.GGMLQuantizationType.F32)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--src", default=None, help="GGUF to dequantize (default: the bundled model)")
    ap.add_argument("--out", default=str(RESULTS / "SmolLM2-135M-Instruct.F32.gguf"))
    args = ap.parse_args()
    if args.src is None:
        from radixgen.runtime.model_loader import bundled_gguf
        src = bundled_gguf()
    else:
        src = Path(args.src)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    dequantize_gguf(src, out)
    print(f"wrote {out} ({out.stat().st_size / 2**20:.0f} MiB) from {src}")


if __name__ == "__main__":
    main()
