"""``batos lineage plot MIND``: gate scores and KL across generations, as a PNG."""
from pathlib import Path


def lineage_points(rows, nights=()):
    """Per generation tried: its gate values by check, promoted or rejected."""
    points = []
    for r in rows:
        if r.get("gate"):
            points.append((r["generation"], "promoted", {c["name"]: c for c in r["gate"]}))
    for r in nights:
        if r.get("gate"):
            points.append((r["generation_tried"], "rejected", {c["name"]: c for c in r["gate"]}))
    return sorted(points, key=lambda p: p[0])


def plot_lineage(mind, points, path) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    panels = [("heldout_kl", "held-out KL(previous || new), nats"),
              ("heldout_ppl_ratio", "perplexity new / previous"),
              ("paraphrase", "paraphrase overlap with the taught answer")]
    for ax, (name, title) in zip(axes, panels):
        for outcome, marker, colour in (("promoted", "o", "#2a9d4b"), ("rejected", "x", "#c0392b")):
            xs = [g for g, o, c in points if o == outcome and name in c]
            ys = [c[name]["value"] for g, o, c in points if o == outcome and name in c]
            ax.plot(xs, ys, marker, color=colour, label=outcome, markersize=8)
        thresholds = [c[name]["threshold"] for _, _, c in points if name in c]
        if thresholds:
            ax.axhline(thresholds[-1], color="grey", linestyle="--", label="threshold")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("generation")
        ax.legend(fontsize=8)
    fig.suptitle(f"{mind}: the gate across generations (identity and capability are "
                 "no-regression checks, listed in `batos lineage`)", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
