"""The report's plots, as PNG bytes."""

from __future__ import annotations

import io
from typing import Any

__all__ = ["accuracy_vs_shots", "history_plot", "noise_free_plot", "ratio_histogram", "scaling_plot", "training_plot"]


def _figure() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Any) -> bytes:
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    _figure().close(fig)
    return out.getvalue()


def accuracy_vs_shots(eval_metrics: dict[str, dict[str, dict]], best_in_pool: dict[str, float] | None = None) -> bytes:
    plt = _figure()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    if best_in_pool:
        shots = sorted(best_in_pool, key=int)
        ax.plot([int(k) for k in shots], [best_in_pool[k] for k in shots], "k:", label="best in pool (noise-free)")
    for system, by_shot in eval_metrics.items():
        if system == "zero-shot":
            m = by_shot["0"]
            ax.axhline(m["accuracy"], color="grey", linestyle="--", label="zero-shot")
            ax.axhspan(m["ci95"][0], m["ci95"][1], color="grey", alpha=0.12)
            continue
        shots = sorted(by_shot, key=int)
        acc = [by_shot[k]["accuracy"] for k in shots]
        err = [
            [a - by_shot[k]["ci95"][0] for k, a in zip(shots, acc, strict=True)],
            [by_shot[k]["ci95"][1] - a for k, a in zip(shots, acc, strict=True)],
        ]
        ax.errorbar([int(k) for k in shots], acc, yerr=err, marker="o", capsize=3, label=system)
    ax.set_xlabel("shots")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_ylabel("VQA accuracy (%)")
    ax.set_title("Accuracy vs shots (95 % bootstrap intervals)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))  # beside the plot, not over it
    return _png(fig)


NOISE_FREE_SHOWN = ("policy", "sft", "mmr", "retrieval", "similarity", "best in pool")


def noise_free_plot(ceilings: dict[str, dict]) -> bytes:
    """The simulator's expected accuracy of the policy, its SFT start and the heuristics against shots, beside the
    best sequence in the pools: the differences the measured plot's intervals hide."""
    plt = _figure()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    shots = sorted(ceilings, key=int)
    for name in NOISE_FREE_SHOWN:
        values = [ceilings[k]["expected_accuracy"].get(name) for k in shots]
        if all(v is not None for v in values):
            style = "k:" if name == "best in pool" else "-"
            ax.plot([int(k) for k in shots], values, style, marker="o", label=name)
    ax.set_xlabel("shots")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_ylabel("expected accuracy (%)")
    ax.set_title("Noise-free accuracy vs shots (simulator's expected accuracy)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return _png(fig)


def ratio_histogram(scored_hist: list[int], accepted_band: tuple[float, float]) -> bytes:
    plt = _figure()
    fig, ax = plt.subplots(figsize=(7, 3.6))
    step = 1 / (len(scored_hist) - 1)  # bars centred on 0, step, ..., 1
    ax.bar([i * step for i in range(len(scored_hist))], scored_hist, width=0.9 * step, edgecolor="white")
    ax.axvspan(
        accepted_band[0] - step / 2,
        accepted_band[1] + step / 2,
        color="green",
        alpha=0.12,
        label="kept (balanced band, inclusive)",
    )
    ax.set_xlabel("positive ratio of a query's candidates")
    ax.set_ylabel("queries")
    ax.set_title("Positive ratio of scored queries")
    ax.legend(fontsize=8)
    return _png(fig)


def history_plot(history: list[dict[str, Any]]) -> bytes:
    plt = _figure()
    fig, ax = plt.subplots(figsize=(7, 3.6))
    xs = list(range(len(history)))
    ax.bar(xs, [h["queries"] for h in history], color="#9ecae1", label="balanced queries")
    ax.set_ylabel("balanced queries")
    ax.set_xticks(xs, [h["run_id"][-12:] for h in history], rotation=30, fontsize=7)
    ax2 = ax.twinx()
    ax2.plot(xs, [h["shot1"] for h in history], color="#d62728", marker="o", label="policy shot-1 accuracy")
    ax2.set_ylabel("shot-1 accuracy (%)")
    ax2.set_ylim(0, 100)  # a fixed scale: a zoomed axis makes noise look like progress
    ax.set_title("Balanced-set size and accuracy across runs")
    fig.legend(fontsize=8, loc="upper left")
    return _png(fig)


def training_plot(curves: dict[str, dict[str, list[float]]]) -> bytes:
    """One panel per curve that explains training: SFT/RCE loss, GRPO reward, clip fraction, KL, flat groups."""
    panels = [
        (stage, name)
        for stage, names in curves.items()
        for name in names
        if curves[stage][name] and name not in ("ratio_min", "ratio_max")
    ]
    plt = _figure()
    cols = 3
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(10, 2.6 * rows), squeeze=False)
    for ax, (stage, name) in zip(axes.flat, panels, strict=False):
        values = curves[stage][name]
        ax.plot(range(1, len(values) + 1), values, marker="o", markersize=3)
        ax.set_title(f"{stage}/{name}", fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    fig.tight_layout()
    return _png(fig)


def scaling_plot(rows: list[dict[str, Any]]) -> bytes:
    """The scaling study: per shot count, the policy (mean ± sd over seeds) against balanced queries, beside its SFT
    start, MMR, retrieval and the best sequence in the pools."""
    plt = _figure()
    shots = sorted(rows[0]["shots"], key=int)
    fig, axes = plt.subplots(1, len(shots), figsize=(3.2 * len(shots), 3.6), sharey=False, squeeze=False)
    x = [r["queries"] for r in rows]
    for ax, k in zip(axes[0], shots, strict=True):
        y = [r["shots"][k]["policy"] for r in rows]
        sd = [r["shots"][k]["policy_sd"] for r in rows]
        ax.errorbar(x, y, yerr=sd, marker="o", capsize=3, label="policy (mean ± sd over seeds)")
        for name, style in (("sft", "C1--"), ("mmr", "C2-."), ("retrieval", "C3:"), ("best in pool", "k:")):
            if name in rows[-1]["shots"][k]:
                ax.plot(x, [r["shots"][k][name] for r in rows], style, label=name)
        ax.set_title(f"shot {k}")
        ax.set_xlabel("balanced queries")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("expected accuracy (%)")
    fig.subplots_adjust(wspace=0.4)
    axes[0][-1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    return _png(fig)
