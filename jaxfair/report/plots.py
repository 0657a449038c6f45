"""Report figures: matplotlib's object API on the Agg canvas (no display, no pyplot state).

Every function returns PNG bytes of a figure with a title, axis labels and units. Groups
and classes go on the vertical axis (horizontal bars): their names ('race=latino_hispanic,
gender=female') are too long to read under a bar.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

DPI = 100
# Legends go right of the axes, where they never hide a bar (savefig's tight box keeps them).
_OUTSIDE = {"loc": "upper left", "bbox_to_anchor": (1.01, 1.0), "fontsize": 8}


def _png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    return buf.getvalue()


def _height(rows: int) -> float:
    return 1.0 + 0.32 * max(rows, 1)


def shares_with_ci(panels: Mapping[str, Mapping[str, dict]], title: str,
                   xlabel: str = "share of samples (%)",
                   reference: Mapping[str, float] | None = None,
                   ylabel: str | Mapping[str, str] = "class") -> bytes:
    """One panel of horizontal bars per entry, each bar a share with its 95% interval.

    Args:
      panels: {panel title: {bar label: proportion dict (stats.proportion)}}.
      title: figure title.
      reference: optional {panel title: share in [0, 1]} drawn as a dashed line (e.g. the
        share every class would have if balanced).
      ylabel: vertical-axis label, one for all panels or {panel title: label}.
    """
    rows = [len(p) for p in panels.values()]
    fig = Figure(figsize=(7.5, sum(_height(r) for r in rows) + 0.6))
    axes = fig.subplots(len(panels), 1, squeeze=False,
                        gridspec_kw={"height_ratios": [_height(r) for r in rows]})[:, 0]
    for ax, (name, bars) in zip(axes, panels.items()):
        labels = list(bars)
        share = np.array([100 * bars[k]["share"] for k in labels])
        lo = np.array([100 * bars[k]["ci95"][0] for k in labels])
        hi = np.array([100 * bars[k]["ci95"][1] for k in labels])
        y = np.arange(len(labels))
        err = np.maximum(np.stack([share - lo, hi - share]), 0.0)  # no -ulp from rounding
        ax.barh(y, share, xerr=err, color="#4c72b0",
                ecolor="black", capsize=3)
        for yi, s, h in zip(y, share, hi):
            ax.text(h + 1, yi, f"{s:.1f}%", va="center", fontsize=8)
        if reference and name in reference:
            ax.axvline(100 * reference[name], color="#c44e52", ls="--", lw=1,
                       label="balanced share")
            ax.legend(**_OUTSIDE)
        ax.set_yticks(y, labels, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlim(0, 110)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel if isinstance(ylabel, str) else ylabel.get(name, ""))
    fig.suptitle(title)
    fig.tight_layout()
    return _png(fig)


def counts_vs_quota(groups: Sequence[str], identities: Sequence[int], quota: Sequence[int],
                    title: str) -> bytes:
    """Identities per group as bars, the quota as a tick at the end of each bar's slot."""
    y = np.arange(len(groups))
    fig = Figure(figsize=(7.5, _height(len(groups)) + 0.8))
    ax = fig.subplots()
    ax.barh(y, identities, color="#55a868", label="identities")
    ax.scatter(quota, y, marker="|", s=300, color="black", zorder=3, label="quota")
    for yi, n, q in zip(y, identities, quota):
        ax.text(max(n, q) * 1.02 + 0.1, yi, f"{n} / {q}", va="center", fontsize=8)
    ax.set_yticks(y, list(groups), fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, max([*identities, *quota, 1]) * 1.2)
    ax.set_xlabel("identities (count)")
    ax.set_ylabel("group")
    ax.set_title(title)
    ax.legend(**_OUTSIDE)
    fig.tight_layout()
    return _png(fig)


def histograms(panels: Mapping[str, Mapping[str, np.ndarray]], title: str, xlabel: str,
               bins: np.ndarray) -> bytes:
    """One panel per entry; in each, a step histogram per series (share of its values).

    Args:
      panels: {panel title: {series label: values [n]}}.
      bins: bin edges shared by every panel.
    """
    fig = Figure(figsize=(7.5, 3.0 * len(panels) + 0.6))
    axes = fig.subplots(len(panels), 1, squeeze=False)[:, 0]
    for ax, (name, series) in zip(axes, panels.items()):
        for label, values in series.items():
            values = np.asarray(values, np.float64)
            if values.size == 0:
                continue
            weights = np.full(values.shape, 100.0 / values.size)
            ax.hist(values, bins=bins, weights=weights, histtype="step", lw=1.5,
                    label=f"{label} (n={values.size})")
        ax.set_title(name, fontsize=10)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("share of images (%)")
        ax.legend(**_OUTSIDE)
    fig.suptitle(title)
    fig.tight_layout()
    return _png(fig)


def stacked_shares(rows: Mapping[str, Mapping[str, float]], classes: Sequence[str],
                   title: str) -> bytes:
    """A 100% stacked horizontal bar per row: how the row splits over ``classes``.

    Args:
      rows: {row label (a group): {class: share in [0, 1]}}.
    """
    labels = list(rows)
    y = np.arange(len(labels))
    fig = Figure(figsize=(7.5, _height(len(labels)) + 1.0))
    ax = fig.subplots()
    left = np.zeros(len(labels))
    cmap = matplotlib.colormaps["tab10" if len(classes) <= 10 else "viridis"]
    colors = [cmap(i if len(classes) <= 10 else i / (len(classes) - 1))
              for i in range(len(classes))]
    for c, color in zip(classes, colors):
        share = np.array([100 * rows[r].get(c, 0.0) for r in labels])
        ax.barh(y, share, left=left, label=c, color=color)
        for yi, lft, s in zip(y, left, share):
            if s >= 8:  # label only segments wide enough to hold it
                ax.text(lft + s / 2, yi, f"{s:.0f}", ha="center", va="center", fontsize=7)
        left += share
    ax.set_yticks(y, labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("share of identities (%)")
    ax.set_ylabel("group")
    ax.set_title(title)
    ax.legend(**_OUTSIDE, title="class")
    fig.tight_layout()
    return _png(fig)


def distance_boxes(series: Mapping[str, np.ndarray], title: str, xlabel: str) -> bytes:
    """Horizontal box plots, one per series (whiskers at the 5th and 95th percentiles)."""
    labels = [k for k, v in series.items() if len(v)]
    fig = Figure(figsize=(7.5, _height(len(labels)) + 0.8))
    ax = fig.subplots()
    if labels:
        ax.boxplot([np.asarray(series[k], np.float64) for k in labels], orientation="horizontal",
                   whis=(5, 95), tick_labels=labels, showmeans=True)
        ax.invert_yaxis()
    ax.tick_params(axis="y", labelsize=8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("group")
    ax.set_title(f"{title}\n(box: quartiles, whiskers: 5-95%, line: median, triangle: mean)",
                 fontsize=10)
    fig.tight_layout()
    return _png(fig)
