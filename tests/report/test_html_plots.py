"""The HTML page and the figures, on fixed inputs."""

import base64
import io

import numpy as np
from PIL import Image

from jaxfair.report import html, plots, stats


def test_page_escapes_text_and_inlines_images():
    png = plots.counts_vs_quota(["tone=dark,hair=long", "<b>"], [3, 1], [3, 4], "Counts")
    page = html.page("Report <1>", [html.Section("Counts & quota", [
        html.Text("a < b"), html.Table(["group", "n"], [["<b>", 1]]),
        html.Image(png, "counts")])])
    assert "<title>Report &lt;1&gt;</title>" in page and "Counts &amp; quota" in page
    assert "<p>a &lt; b</p>" in page and "<td>&lt;b&gt;</td>" in page
    assert f"data:image/png;base64,{base64.b64encode(png).decode()}" in page


def test_figures_are_pngs():
    shares = stats.proportions(np.array([0, 0, 1, 2]), ("light", "medium", "dark"))
    figs = [
        plots.shares_with_ci({"tone": shares}, "Audit", reference={"tone": 1 / 3}),
        plots.histograms({"tone": {"g1": np.array([0.91, 0.99]), "g2": np.array([])}},
                         "Target", "probability", np.linspace(0.9, 1, 11)),
        plots.stacked_shares({"g1": {"no": 0.7, "yes": 0.3}}, ("no", "yes"), "glasses"),
        plots.distance_boxes({"g1": np.array([0.1, 0.2, 0.4]), "g2": np.array([])}, "NN",
                             "rms distance"),
    ]
    for png in figs:
        with Image.open(io.BytesIO(png)) as im:
            assert im.format == "PNG" and im.size[0] > 300 and im.size[1] > 100
