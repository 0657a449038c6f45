"""Bulk dataset generation: work units, shards with DONE markers, manifest, multi-host.

Modules: plan (groups x quota -> units -> steps), compute (a step: fused search, full
render, variations, records), variations (directions in W), writer (atomic shards in a
thread pool), manifest (plan.json, cross-unit near-duplicates, manifest.json, ImageFolder),
progress, distributed (jax.distributed, barriers), run (the whole job), dataset (reading a
dataset back).
"""
