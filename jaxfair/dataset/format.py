"""The dataset format on disk, ``jaxfair-dataset/1``: every name the writer, the manifest,
the reader and the run's header use.

  DIR/plan.json                    PLAN: written first; fingerprints the run (FORMAT, ...)
  DIR/shards/NNNNN/                SHARDS, ``shard_dir(DIR, unit)``: one per work unit
      records.jsonl                RECORDS: one JSON object per image (RECORD_KEYS, ...)
      latents.npy                  LATENTS: [n, w_dim] (or W+ [n, num_ws, w_dim])
      z.npy                        Z: [n, z_dim], search space z only
      <id>.png | <id>.jpg          the images (none with image_format 'none')
      DONE                         written last: {"unit": u, "records": n, "files":
                                   {name: {"size", "sha256"}}, counts...} (verify.py)
  DIR/shards/.tmp-NNNNN/           a shard being written (renamed into place when DONE)
  DIR/planner.npz                  PLANNER_STATE: the planner's state after its last round
  DIR/manifest.json                MANIFEST: counts per group, excluded records
  DIR/imagefolder/<slug(group)>/<identity>/<variation>.<ext>   IMAGEFOLDER (optional)
  DIR/.lock                        LOCK: flocked by the running job (dataset/lock.py)
  any name holding ``.tmp-``       TMP: a temporary of a job; removed on resume (verify.py)
"""

from __future__ import annotations

import os

FORMAT = "jaxfair-dataset/1"
PLAN = "plan.json"
MANIFEST = "manifest.json"
SHARDS = "shards"
DONE = "DONE"
RECORDS = "records.jsonl"
LATENTS = "latents.npy"
Z = "z.npy"
IMAGEFOLDER = "imagefolder"
PLANNER_STATE = "planner.npz"
LOCK = ".lock"
TMP = ".tmp-"

# Keys a reader needs in plan.json and in every record.
PLAN_KEYS = ("method", "attributes", "schema", "groups", "variations", "image_format",
             "latent_space")
RECORD_KEYS = ("id", "identity", "group", "variation", "file", "latent_row", "attributes",
               "target_probs", "unit")


def shard_dir(workdir: str, unit_id: int) -> str:
    """``DIR/shards/NNNNN``: the finished shard of a unit."""
    return os.path.join(workdir, SHARDS, f"{unit_id:05d}")


def slug(group: str) -> str:
    """A group's text as a file or directory name (every output that names groups):
    'tone=dark,hair=long|short' -> 'tone-dark_hair-long+short'."""
    return group.replace("=", "-").replace(",", "_").replace("|", "+")
