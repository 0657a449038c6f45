r"""Export a finished dataset for training: ``python -m jaxfair.export``.

  python -m jaxfair.export --dataset=out/demo --format=webdataset --out=out/demo-wds \
      [--crop=none|arcface112] [--image_format=jpg|png] [--val_fraction=0.1]

Formats: webdataset (tar shards), arrayrecord (grain), recordio (insightface train.rec /
train.idx / property), imagefolder (one folder per identity + metadata.jsonl); each with
index.parquet and pairs.parquet (docs/datasets.md). The export is resumable and atomic: it
is written in parts into OUT.partial; after a kill the same command continues from the
last finished part, and OUT appears complete or not at all. Bad input (an unknown format,
a non-empty --out that is not this export, an OUT.partial of other arguments): one line
on stderr, exit status 2.
"""

from __future__ import annotations

from absl import flags

from jaxfair import cli
from jaxfair.convert.guard import CheckpointError
from jaxfair.dataset.export import FORMATS, export
from jaxfair.judge.crops import CROPS

_DATASET = flags.DEFINE_string("dataset", None, "Finished dataset directory.", required=True)
_FORMAT = flags.DEFINE_enum("format", None, list(FORMATS), "Output format.", required=True)
_OUT = flags.DEFINE_string("out", None, "Output directory (absent or empty).", required=True)
_CROP = flags.DEFINE_enum("crop", "none", list(CROPS), "Crop written (arcface112: "
                          "insightface's aligned 112x112).")
_IMAGE_FORMAT = flags.DEFINE_enum("image_format", "", ["", "jpg", "png"],
                                  "Encoding of the written images ('': the dataset's own).")
_VAL = flags.DEFINE_float("val_fraction", 0.1, "Share of identities in the val split.")
_SHARD_BYTES = flags.DEFINE_integer("shard_bytes", 10**9, "Image bytes per export part, cut at "
                                    "the next identity (one webdataset / arrayrecord file "
                                    "per part; resume granularity).")

PROG = "jaxfair.export"


def main():
    try:
        s = export(_DATASET.value, _FORMAT.value, _OUT.value, crop=_CROP.value,
                   image_format=_IMAGE_FORMAT.value, val_fraction=_VAL.value,
                   shard_bytes=_SHARD_BYTES.value)
    except (ValueError, CheckpointError, OSError) as e:
        cli.fail(PROG, e)
    print(f"wrote {s['images']} images of {s['identities']} identities ({s['format']}, crop "
          f"{s['crop']}, {s['image_format']}) to {_OUT.value}: {s['bytes'] / 1e6:.1f} MB in "
          f"{s['seconds']:.1f} s; {s['val_identities']} val identities, {s['pairs']} pairs"
          + (f"; resumed after {s['resumed_parts']} finished parts" if s["resumed_parts"]
             else ""))


if __name__ == "__main__":
    cli.run(main, PROG)
