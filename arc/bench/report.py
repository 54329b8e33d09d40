"""``arc-bench generate``'s outputs: ``results.json``, ``results.md`` (the tables, also printed) and ``stages.png``
(time per stage per run)."""

from __future__ import annotations

import json
import math
from pathlib import Path

STAGE_NAMES = {"conditioners": "conditioners", "dit_step": "DiT step", "sampling": "all steps", "decoder": "decoder",
               "end_to_end": "end to end"}  # fmt: skip


def _ms(stat: dict) -> str:
    return f"{stat['median_s'] * 1e3:.0f}" if stat["n"] else f"{stat['median_s'] * 1e3:.0f}*"


def _db(value: float | None) -> str:
    if value is None:
        return ""
    return "exact" if math.isinf(value) else f"{value:.1f}"


def _first_call(run: dict) -> str:
    return "" if run["first_call_s"] is None else f"{run['first_call_s']:.1f}"


def markdown(results: dict) -> str:
    runs = results["runs"]
    reference = next((r for r in runs if not r["baseline"]), runs[0])
    baseline = next((r for r in runs if r["baseline"]), None)
    fastest = min((r for r in runs if not r["baseline"]), key=lambda r: r["stages"]["end_to_end"]["median_s"],
                  default=None)  # fmt: skip
    lines = [
        f"{results['date']} · {results['machine']} · torch {results['torch']} · {results['device']} · batch "
        f"{results['batch_size']} · {results['audio']} · {results['weights']}",
        "",
        "measured peak (square matmul): "
        + ", ".join(f"{d} {p / 1e12:.2f} TFLOP/s" for d, p in results["peak_flops"].items()),  # fmt: skip
        "",
        "| run | fast paths | sampler | cond ms | DiT step ms | all steps ms | decoder ms | end to end ms "
        "(min-max) | first call s | RTF | peak MiB | SNR audio / latents dB | x vs "
        f"{reference['name']} |" + (f" x vs {baseline['name']} |" if baseline else ""),
        "|---" * (13 + bool(baseline)) + "|",
    ]
    for r in runs:
        st = r["stages"]
        e2e = st["end_to_end"]
        row = (
            f"| {r['name']} | {r['describe']} | {r['sampler']} x{r['steps']}, CFG {r['cfg_scale']:g} | "
            f"{_ms(st['conditioners'])} | {_ms(st['dit_step'])} | {_ms(st['sampling'])} | {_ms(st['decoder'])} | "
            f"{e2e['median_s'] * 1e3:.0f} ({e2e['min_s'] * 1e3:.0f}-{e2e['max_s'] * 1e3:.0f}) | "
            f"{_first_call(r)} | "
            f"{r['real_time_factor']:.2f} | {r['peak_mib']:.0f} | "
            f"{_db(r['snr_audio_db'])} / {_db(r['snr_latents_db'])} | "
            f"{reference['stages']['end_to_end']['median_s'] / e2e['median_s']:.2f} |"
        )
        if baseline:
            row += f" {baseline['stages']['end_to_end']['median_s'] / e2e['median_s']:.1f} |"
        lines.append(row)
    lines += [
        "",
        "ms: median over the repeats; `*`: timed once (a baseline's loop and decoder); a baseline's end to end is the "
        "sum of its stages. RTF: seconds of audio per second of generation. SNR: against the first run with the "
        "same sampler, steps and CFG (same seeds).",
        "",
        "FLOPs per stage (counted: matmuls, convolutions, attention) and the fraction of the measured peak in the "
        "stage's dtype:",
        "",
        "| run | "
        + " | ".join(f"{STAGE_NAMES[s]} GFLOP (% of peak)" for s in STAGE_NAMES if s != "end_to_end")
        + " |",
        "|---" * 5 + "|",
    ]
    for r in runs:
        cells = [f"{r['stages'][s]['flops'] / 1e9:.4g} ({100 * r['stages'][s]['fraction_of_peak']:.0f} %)"
                 for s in STAGE_NAMES if s != "end_to_end"]  # fmt: skip
        lines.append(f"| {r['name']} | " + " | ".join(cells) + " |")
    for dtype, seconds in results["diffusers_dit_step_s"].items():
        eager = [r for r in runs if r["fast_paths"]["dit_dtype"] == dtype and not r["fast_paths"]["compile"]]
        arc_steps = [r["stages"]["dit_step"]["median_s"] for r in eager if r["cfg_scale"] == 1]
        versus = f" (arc's eager DiT step in the same dtype: {min(arc_steps) * 1e3:.0f} ms)" if arc_steps else ""
        lines += ["", f"diffusers' StableAudioDiTModel at the same shape (no QK norm), one step in {dtype}: "
                  f"{seconds * 1e3:.0f} ms{versus}"]  # fmt: skip
    if fastest is not None:
        lines += ["", f"fastest: {fastest['name']} ({fastest['describe']}), "
                  f"{fastest['stages']['end_to_end']['median_s']:.2f} s end to end"]  # fmt: skip
    return "\n".join(lines) + "\n"


def plot_stages(results: dict, path: Path) -> Path:
    """Stacked bars of the median conditioners, all steps and decoder times per run, labelled with the total: the
    fast paths in one panel, the baselines next to the fastest run in another (their scale would hide the rest)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [r for r in results["runs"] if not r["baseline"]]
    baselines = [r for r in results["runs"] if r["baseline"]]
    fastest = min(runs, key=lambda r: r["stages"]["end_to_end"]["median_s"]) if runs else None
    panels = [(runs, "fast paths")] + ([(baselines + [fastest], "baselines")] if baselines and fastest else [])
    heights = [len(rows) for rows, _ in panels]
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, 0.45 * sum(heights) + 2), squeeze=False,
                             gridspec_kw={"height_ratios": heights})  # fmt: skip
    for ax, (rows, title) in zip(axes[:, 0], panels, strict=True):
        names = [r["name"] for r in rows]
        left = [0.0] * len(rows)
        for stage, color in (("conditioners", "#999999"), ("sampling", "#1f77b4"), ("decoder", "#ff7f0e")):
            widths = [r["stages"][stage]["median_s"] for r in rows]
            ax.barh(names, widths, left=left, color=color, label=STAGE_NAMES[stage])
            left = [a + b for a, b in zip(left, widths, strict=True)]
        for y, total in enumerate(left):
            ax.text(total, y, f" {total:.2f} s", va="center", fontsize=8)
        ax.invert_yaxis()
        ax.set_xlim(0, max(left) * 1.15)
        ax.set_title(f"{title}: generation per stage, {results['device']}, batch {results['batch_size']}", fontsize=10)
        ax.legend(loc="lower right", fontsize=8)
    axes[-1, 0].set_xlabel("seconds (median)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_report(results: dict, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "results.md").write_text(markdown(results))
    return [out / "results.json", out / "results.md", plot_stages(results, out / "stages.png")]
