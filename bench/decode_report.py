"""bench/decode.py's table and plot, from the rows its children return."""
from __future__ import annotations

from pathlib import Path


def case_title(name: str) -> str:
    """b1_p32 -> 'batch 1, 32-token prompt'; b64 -> 'batch 64 (32-token prompts)'."""
    if name.startswith("b1_p"):
        return f"batch 1, {name[4:]}-token prompt"
    return f"batch {name[1:]} (32-token prompts)"


def label(row: dict) -> str:
    return row["system"] if row["system"] in ("llama.cpp", "transformers") else f"radixgen {row['system']}"


def table(rows: list[dict], names: list[str], tokens: int) -> str:
    """One row per system; each case's cell: decode tok/s (ratio to llama.cpp's, or to the first
    row's without llama.cpp) and the time to first token."""
    base = next((r for r in rows if r["system"] == "llama.cpp"), rows[0])
    lines = ["| system | weights, dtype | " + " | ".join(f"{case_title(n)}: decode tok/s (vs {base['system']}), TTFT"
                                                      for n in names) + " | RSS after load MB | RSS peak MB |",
             "|---|---|" + "---:|" * (len(names) + 2)]
    for r in rows:
        cells = []
        for n in names:
            c, ref = r["cases"][n], base["cases"][n]["decode_tok_s"]
            cells.append(f"{c['decode_tok_s']:.1f} (x{c['decode_tok_s'] / ref:.2f}), {c['ttft_s']:.2f} s")
        lines.append(f"| {label(r)} | {r['weights']} | " + " | ".join(cells)
                     + f" | {r['rss_loaded_mb']:.0f} | {r['rss_peak_mb']:.0f} |")
    return "\n".join(lines) + (f"\n\ndecode tok/s: batch x {tokens - 1} tokens / the time after every request's first token"
                               " (batch > 1: aggregate); TTFT: time to every request's first token (prefill)")


def plot(rows: list[dict], names: list[str], title: str, path: Path) -> None:
    """Grouped bars: decode tok/s per case (log scale: batch 64 is ~10x batch 1), one bar per system."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.5))
    width = 0.8 / len(rows)
    for i, r in enumerate(rows):
        xs = [j + (i - (len(rows) - 1) / 2) * width for j in range(len(names))]
        ax.bar(xs, [r["cases"][n]["decode_tok_s"] for n in names], width, label=label(r))
    ax.set_xticks(range(len(names)), [case_title(n) for n in names], fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("decode tokens / s (batch > 1: all requests)")
    ax.set_title(title.split(" | ")[0] + "\n" + title.split(" | ")[-1], fontsize=8)
    ax.grid(axis="y", alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
