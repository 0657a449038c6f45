"""Reports people can look at: bias audit of a generator, dataset report, diversity.

Modules: stats (proportions with 95% Wilson intervals), diversity (pairwise and
nearest-neighbour distances), reclassify (images read back from disk, classified again),
dataset_stats (figures from a dataset's records), plots (matplotlib Agg figures), html
(self-contained page), text (terminal tables), audit (``python -m jaxfair.report audit``),
dataset_report (``python -m jaxfair.report dataset``).
"""
