"""Bulk dataset generation: work units, shards with DONE markers, manifest, multi-host.

Modules: plan (groups x quota -> units -> steps), worker (a step: fused search, full
render, variations, records), finders, variations (directions in W), progress, distributed
(jax.distributed, barriers), run (the whole job). The files on disk: jaxfair.dataset.
"""
