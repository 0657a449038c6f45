r"""Converts an official checkpoint into a jaxfair checkpoint directory.

  python -m jaxfair.convert --src=stylegan2-ffhq-1024x1024.pkl --out=checkpoints/ffhq1024
  python -m jaxfair.convert --src=res34_fair_align_multi_7_20190809.pt --out=checkpoints/fairface
  python -m jaxfair.convert --src=fairface_alldata_4race_20191111.pt --schema=fairface4 \
      --out=checkpoints/fairface4
  python -m jaxfair.convert --out=checkpoints/deepface \
      --src=race_model_single_batch.h5,gender_model_weights.h5,age_model_weights.h5
  python -m jaxfair.convert --random=ffhq1024 --seed=0 --out=checkpoints/random/ffhq1024

``--random=NAME`` writes a random stand-in of a real architecture instead of converting
(seeded weights in the real shapes, marked ``"random_standin": true`` in meta.json; see
jaxfair/convert/standins.py): to size or smoke-test a machine before the real weights exist.

Reads the file with a restricted unpickler (no code from the file runs), infers the
architecture from it, and writes DIR/meta.json + DIR/params atomically. Bad input: one line
on stderr naming the file and the problem, exit status 2, nothing left in --out.
"""

from __future__ import annotations

from absl import flags, logging

from jaxfair import cli
from jaxfair.convert import formats
from jaxfair.convert.guard import CheckpointError
from jaxfair.io import checkpoints

_SRC = flags.DEFINE_string("src", None, "Source checkpoint file (.pkl, .pt), or up to three "
                           "comma-separated DeepFace .h5 files (race, gender, age).")
_OUT = flags.DEFINE_string("out", None, "Output directory (must not exist or be empty).")
_FORMAT = flags.DEFINE_enum("format", "auto", list(formats.FORMATS), "Source format.")
_SCHEMA = flags.DEFINE_enum("schema", "auto", list(formats.SCHEMA_CHOICES),
                            "Classifier output schema (auto: fairface7 for an 18-way ResNet "
                            "head; fairface4 for FairFace's 4-race model; deepface for .h5).")
_RANDOM = flags.DEFINE_string("random", None, "Write a random stand-in instead of converting: "
                              "ffhq1024, ffhq512, ffhq256, fairface7, fairface4 or deepface.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the --random stand-in's weights.")
_CHANNELS_SCALE = flags.DEFINE_float("channels_scale", 1.0, "--random only: every width times "
                                     "this (0, 1] (real resolution, mapping and depth).")
_CALIBRATE_ON = flags.DEFINE_string("calibrate_on", None, "--random classifiers: calibrate the "
                                    "heads on this generator's images (default: a reduced "
                                    "random ffhq256 of the same seed).")


def fail(msg: str) -> None:
    cli.fail("jaxfair.convert", msg)


def main():
    if _RANDOM.value is not None:
        return write_standin()
    if not _SRC.value or not _OUT.value:
        fail("both --src and --out are required")
    try:
        checkpoints.check_output_dir(_OUT.value)
        conv = formats.read(_SRC.value, _FORMAT.value, _SCHEMA.value)
    except checkpoints.CheckpointDirError as e:
        fail(str(e))
    except CheckpointError as e:
        fail(f"{_SRC.value}: {e}")
    logging.info("read %s (%s): %s", _SRC.value, conv.source["format"], conv.config)
    try:
        checkpoints.save(_OUT.value, conv.params, conv.meta())
    except (OSError, checkpoints.CheckpointDirError) as e:
        fail(f"{_OUT.value}: {e}")
    sha = conv.source["sha256"]
    sha = ",".join(h[:12] for h in sha) if isinstance(sha, list) else sha[:12]
    schema = f", schema {conv.schema}" if conv.schema else ""
    print(f"wrote {conv.kind} checkpoint to {_OUT.value} ({conv.source['format']}{schema}, "
          f"sha256 {sha})")


def write_standin() -> None:
    """--random: a seeded stand-in of a real architecture (never mistaken for real weights)."""
    from jaxfair.convert import standins
    from jaxfair.io import loading

    if not _OUT.value or _SRC.value:
        fail("--random needs --out and takes no --src")
    try:
        checkpoints.check_output_dir(_OUT.value)
        st = standins.create(_RANDOM.value, _SEED.value, _CHANNELS_SCALE.value,
                             _CALIBRATE_ON.value, loading.load_generator)
        checkpoints.save(_OUT.value, st.params, st.meta)
    except (standins.StandinError, checkpoints.CheckpointDirError, CheckpointError, OSError) as e:
        fail(str(e))
    print(f"wrote RANDOM STAND-IN {st.kind} checkpoint {_RANDOM.value} (seed {_SEED.value}, "
          f"channels x{_CHANNELS_SCALE.value:g}) to {_OUT.value}: not real weights")


if __name__ == "__main__":
    cli.run(main, "jaxfair.convert")
