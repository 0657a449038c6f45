"""Reports people can look at: bias audit of a generator, dataset report, diversity.

Modules: stats (proportions with 95% Wilson intervals), diversity (pairwise and
nearest-neighbour distances), reclassify (images read back from disk, classified again),
dataset_stats (figures from a dataset's records), plots (matplotlib Agg figures), html
(self-contained page), text (terminal tables), audit (``python -m jaxfair.report audit``),
faithfulness (the demo world's exact KS ratio and truth), two_sample (collapse statistics
with a permutation noise floor), reference (each group against an unguided sample of it),
sections (the dataset report's HTML), jobs (``benchmark --jobs``), dataset_report
(``python -m jaxfair.report dataset``).
"""
