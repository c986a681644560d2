"""Admin-view plots (matplotlib, no display needed): per-labeler volume, speed and quality."""

from __future__ import annotations


def quality_figure(progress: dict, quality: dict):
    """Four panels: judgments per labeler, median seconds per judgment, agreement and gold
    accuracy per labeler, and how often each labeler picks the shown position A."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    speed, labelers = progress["labelers"], quality["labelers"]
    names = sorted(set(speed) | set(labelers))
    fig, axes = plt.subplots(2, 2, figsize=(11, 7))
    (ax_n, ax_t), (ax_q, ax_pos) = axes
    x = range(len(names))

    def val(d, name, key):
        v = d.get(name, {}).get(key)
        return float("nan") if v is None else v

    ax_n.bar(x, [val(speed, n, "judgments") for n in names], color="#4c72b0")
    ax_n.set_title("judgments")
    ax_t.bar(x, [val(speed, n, "median_s") for n in names], color="#55a868")
    ax_t.set_title("median seconds per judgment")
    width = 0.4
    ax_q.bar([i - width / 2 for i in x], [val(labelers, n, "agreement") for n in names], width, label="agreement")
    ax_q.bar([i + width / 2 for i in x], [val(labelers, n, "gold_accuracy") for n in names], width, label="gold accuracy")
    # Both shares are at most 1: the legend goes in a band above 1, where no bar can reach
    # (in a corner it hid the bars of good labelers, the ones near 1).
    ax_q.set_ylim(0, 1.3)
    ax_q.set_yticks([0, 0.25, 0.5, 0.75, 1])
    ax_q.set_title("agreement with others / gold accuracy")
    ax_q.legend(loc="upper center", ncol=2, fontsize=8, frameon=False)
    if quality["mode"] == "pairwise":
        ax_pos.bar(x, [val(labelers, n, "a_rate") for n in names], color="#c44e52")
        ax_pos.axhline(0.5, color="black", linestyle="--", linewidth=1)
        ax_pos.set_title("position bias: share of decisive votes for A (0.5 = none)")
    else:
        ax_pos.bar(x, [val(labelers, n, "top_a_rate") for n in names], color="#c44e52")
        expected = quality["position_bias"].get("expected_rate")
        if expected:
            ax_pos.axhline(expected, color="black", linestyle="--", linewidth=1)
        ax_pos.set_title("position bias: share of rankings with A first")
    ax_pos.set_ylim(0, 1)
    for ax in axes.flat:
        ax.set_xticks(list(x))
        ax.set_xticklabels(names, rotation=30, ha="right", fontsize=8)
    fig.suptitle(f"{progress['campaign']}: {progress['judgments']} judgments, "
                 f"{100 * progress['fraction_done']:.0f}% of target")
    fig.tight_layout()
    plt.close(fig)
    return fig
