"""HTML sections of the dataset report, one per figure family (jaxfair.report.html blocks).

Each function takes the numbers ``jaxfair.report.dataset_report.build`` computed for its
section (as they go to report.json) and returns an ``html.Section``; figures are added to
``files`` ({relative name: PNG bytes}) and shown inline.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import numpy as np

from jaxfair.judge import attributes
from jaxfair.report import html as H
from jaxfair.report import plots, stats

NOT_IDENTITY = ("Distances in latent and classifier-feature space measure how spread the "
                "samples are and flag near-copies; they are not an identity-recognition "
                "measure (two distant latents can still show the same person). Pass a "
                "face-embedding model (embedders=) once one is converted for that.")


def fmt(x: float | None, digits: int = 3) -> str:
    """A number for a table: ``digits`` decimals, '-' for None or nan."""
    return "-" if x is None or not np.isfinite(x) else f"{x:.{digits}f}"


def demo_faithfulness(f: dict) -> H.Section:
    """KS ratio and ground truth per group (demo world; jaxfair.report.faithfulness)."""
    rows = [[g, v["identities"], fmt(v["ks_ratio"], 2), f"{100 * v['truth']:.1f} %"]
            for g, v in f.items()]
    return H.Section("Faithfulness (demo world, exact factors)", [
        H.Text("KS ratio: mean Kolmogorov-Smirnov distance from uniform of the world factors "
               "the group does not constrain, over the same mean for as many independent "
               "uniform draws (what binned rejection sampling gives). About 1 is faithful; "
               "above about 1.3, identities cluster (near-copies). Truth: the share of "
               "identities whose exact world labels are in the group."),
        H.Table(["group", "identities", "KS ratio", "truth"], rows)])


def agreement(agr: dict, files: dict[str, bytes], image_format: str) -> H.Section:
    """Re-classification of images read back (jaxfair.report.reclassify)."""
    per_attr = "stored class reproduced, per attribute"
    per_group = "still in its group (every constrained attribute), per group"
    how = "rendered from latents" if image_format == "none" else "decoded from disk"
    files["agreement.png"] = plots.shares_with_ci(
        {per_attr: agr["attributes"], per_group: agr["in_group"]},
        f"Re-classification of {agr['n']} images {how} (95% Wilson CI)",
        xlabel="share of images (%)", ylabel={per_attr: "attribute", per_group: "group"})
    rows = [[a, stats.percent(p), fmt(agr["prob_abs_diff"][a]["mean"], 4),
             fmt(agr["prob_abs_diff"][a]["max"], 4)] for a, p in agr["attributes"].items()]
    rows += [[f"in group: {g}", stats.percent(p), "", ""] for g, p in agr["in_group"].items()]
    rows.append(["in group: all", stats.percent(agr["in_group_all"]), "", ""])
    src = ("rendered from the stored latents (no image files)" if image_format == "none"
           else f"decoded from the {image_format} files")
    return H.Section("Re-classification agreement", [
        H.Text(f"{agr['n']} identity images {src}, mapped back to [-1, 1] and classified "
               "again. 'agreement': the new argmax class equals the stored one; |dp|: change "
               "of the stored class's probability."),
        H.Table(["attribute / group", "agreement [95% CI]", "mean |dp|", "max |dp|"], rows),
        H.Image(files["agreement.png"], "re-classification agreement")])


def target_probs(tp: dict, groups: Mapping[str, list[dict]],
                 files: dict[str, bytes]) -> H.Section:
    """Target-class probabilities per group (table and histograms)."""
    rows = [[a, g, s["n"], fmt(s["min"]), fmt(s["q05"]), fmt(s["median"]), fmt(s["mean"])]
            for a, per in tp.items() for g, s in per.items()]
    blocks: list = [H.Text("Probability the classifier gave to the group's own classes, per "
                           "target attribute, over every image (variations included)."),
                    H.Table(["attribute", "group", "images", "min", "5%", "median", "mean"],
                            rows)]
    panels = {}
    for a in tp:
        panels[f"target attribute: {a}"] = {
            g: np.array([r["target_probs"][a] for r in recs if a in r["target_probs"]])
            for g, recs in groups.items() if g in tp[a]}
    values = [v for p in panels.values() for v in p.values() if len(v)]
    if values:
        lo = np.floor(min(v.min() for v in values) * 20) / 20
        files["target_probs.png"] = plots.histograms(
            panels, "Target-class probability per group", "probability of the target classes",
            np.linspace(min(lo, 0.95), 1.0, 41))
        blocks.append(H.Image(files["target_probs.png"], "target-class probabilities"))
    return H.Section("Target-class probabilities", blocks)


def non_target(nt: dict, schema: attributes.Schema, files: dict[str, bytes]) -> H.Section:
    """How each group splits over the attributes it leaves free."""
    blocks: list = [H.Text("Classes of the attributes a group does not constrain, over its "
                           "identities: balance on the target attributes must not hide a "
                           "skew on the others.")]
    for a, rows in nt.items():
        classes = schema.attribute(a).classes
        blocks.append(H.Table([f"group ({a})", *classes],
                              [[g, *(stats.percent(p[c]) for c in classes)]
                               for g, p in rows.items()]))
        name = f"non_target_{a}.png"
        files[name] = plots.stacked_shares(
            {g: {c: p[c]["share"] for c in classes} for g, p in rows.items()}, classes,
            f"{a} within each group")
        blocks.append(H.Image(files[name], f"{a} within each group"))
    return H.Section("Non-target attributes per group", blocks)


def diversity(div: dict, nn: dict, files: dict[str, bytes]) -> H.Section:
    """Distances per group in every space (jaxfair.report.diversity)."""
    blocks: list = [H.Text(NOT_IDENTITY)]
    for space, s in div.items():
        unit = "rms distance per coordinate" if s["metric"] == "rms" else "cosine distance"
        blocks.append(H.Text(f"{space}: {unit}; mean distance between two identities of a group "
                             f"{fmt(s['within_group_mean_pairwise'], 4)}; near-duplicate "
                             f"radius {fmt(s['radius'], 4)}."))
        rows = [[g, v["n"], fmt(v["mean_pairwise"], 4), fmt(v["nn"]["mean"], 4),
                 fmt(v["nn"].get("q05"), 4), fmt(v["nn"]["min"], 4),
                 v["near_duplicate_pairs"]] for g, v in s["groups"].items()]
        blocks.append(H.Table(["group", "n", "mean pairwise", "NN mean", "NN 5%", "NN min",
                               "near-duplicate pairs"], rows))
        if nn.get(space):
            name = "diversity_" + re.sub(r"[^a-z0-9]+", "_", space.lower()).strip("_") + ".png"
            files[name] = plots.distance_boxes(nn[space], f"Nearest-neighbour distance: {space}",
                                               f"{unit} to the nearest other identity")
            blocks.append(H.Image(files[name], f"nearest-neighbour distances, {space}"))
    return H.Section("Diversity", blocks)


def unguided_reference(ref: dict) -> H.Section:
    """Each group against an equal-size unguided sample of it (jaxfair.report.reference)."""
    if "skipped" in ref:
        return H.Section("Faithfulness: each group against an unguided sample", [
            H.Text(f"Not computed: {ref['skipped']}.")])
    rule = ref["rule"]
    how = (f"probability >= {rule['threshold']} on every constrained attribute"
           if rule["mode"] == "threshold" else "argmax class in the group")
    rows = []
    for g, v in ref["groups"].items():
        cells = [g, v["identities"], v["reference"], v["compared"]]
        for space in ("latent", "features"):
            s = v.get(space)
            cells += (["-", "-"] if s is None else
                      [f"{fmt(s['nn_ratio'], 2)} ({fmt(s['nn_floor'], 2)})",
                       fmt(s["energy_p"], 3)])
        rows.append(cells)
    return H.Section("Faithfulness: each group against an unguided sample", [
        H.Text("Needs no ground truth. The reference of a group is the first prior samples "
               "the dataset's own rule put in it (" + how + f"; psi {rule['truncation_psi']}"
               "): what binned rejection sampling gives, the generator's own faces of the "
               f"group. It cost {ref['evaluations']:,} generator + classifier evaluations "
               f"({ref['seconds']:.1f} s; budget {ref['budget']:,}); a group the budget "
               "left short is compared at the size reached. Compared: that many of the "
               "group's identities (a seeded subset) with as many reference faces, in latent "
               "space (z on its sphere where the dataset kept z, else the stored latents; "
               "rms distance) and in classifier-feature space (cosine distance, both sides "
               "rendered from their latents)."),
        H.Text("NN ratio: mean nearest-neighbour distance in the reference over the same in "
               "the dataset. About 1 is faithful; larger means the identities are clustered "
               "(near-copies). In brackets the noise floor: the 95th percentile of the same "
               "ratio between random halves of the two samples pooled (what chance gives at "
               "that size); a ratio above it is more clustered than chance (a faithful group "
               "exceeds it 1 time in 20, so expect a few of many groups to; near-copies "
               "read far above it). Energy p: "
               "permutation p-value of the energy distance (any difference of distribution, "
               "not only clustering); small values say the group differs from the "
               "generator's own faces of it."),
        H.Table(["group", "identities", "reference reached", "compared",
                 "latent NN ratio (floor)", "latent energy p",
                 "feature NN ratio (floor)", "feature energy p"], rows)])
