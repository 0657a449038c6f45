r"""The distribution method: ``python -m jaxfair.sample fit|draw``.

  python -m jaxfair.sample fit --config=configs/demo.py --workdir=out/dist
  python -m jaxfair.sample draw --workdir=out/dist --counts="tone=dark,hair=long:64" --verify

``fit`` labels W with the classifier, trains the autoencoder and one Gaussian mixture per
group, and saves them to the workdir (``config.distribution``; see
jaxfair.distribution.fit). ``draw`` samples each group of ``--counts`` from its
mixture, decodes and renders; ``--verify`` keeps only samples the classifier puts in the
group (jaxfair.distribution.draw). The demo-only experiments on a fit (hybrid search starts,
ground-truth evaluation) are ``python -m jaxfair.lab hybrid|evaluate``. Bad input: one line
on stderr, exit status 2, nothing written.
"""

from __future__ import annotations

from absl import flags, logging

from jaxfair import cli
from jaxfair.distribution import draw as distribution_draw
from jaxfair.distribution import fit as distribution

PROG = "jaxfair.sample"
COMMANDS = ("fit", "draw")

_WORKDIR = flags.DEFINE_string("workdir", None, "Fitted model directory (default: "
                               "config.distribution.workdir).")
_COUNTS = flags.DEFINE_string("counts", None, "draw: 'target:count;...', e.g. "
                              "'tone=dark,hair=long:100' (default: config.distribution.counts).")
_VERIFY = flags.DEFINE_bool("verify", False, "draw: keep only samples the classifier puts in "
                            "the group (threshold of the fit), drawing more until counts are met.")
_OUT = flags.DEFINE_string("out", None, "draw: output directory (default: <workdir>/draw).")


def _print_draw(summary: dict, out: str) -> None:
    for name, s in summary["groups"].items():
        print(f"{name}: {s['count']} kept of {s['drawn']} drawn, purity "
              f"{s['purity_before']:.3f} -> {s['purity_after']:.3f}, "
              f"distinct {s['distinct_share']:.3f}, {s['samples_per_s']} samples/s")
    print(f"wrote {summary['num_images']} images to {out}")


def main(command: str, config) -> None:
    dc = config.distribution
    workdir = _WORKDIR.value or dc.workdir
    out = _OUT.value or f"{workdir}/{command}"
    logging.info("devices: %s", cli.device_summary())
    logging.info("config:\n%s", config)
    with cli.reporting(PROG):
        if command == "fit":
            meta = distribution.fit(config, workdir, log=logging.info)
            groups = meta["fit"]["groups"]
            members = ", ".join(f"{n} {g['members']}" for n, g in groups.items())
            print(f"wrote the distribution model of {len(groups)} groups to {workdir} "
                  f"(members: {members})")
        elif command == "draw":
            counts = _COUNTS.value if _COUNTS.value is not None else dc.counts
            _print_draw(distribution_draw.draw(
                workdir, counts, out, _VERIFY.value, dc.batch_size, dc.seed,
                dc.max_draw_factor, dc.image_format, config.identity_radius, log=logging.info,
                memory_budget_gb=config.memory_budget_gb), out)


if __name__ == "__main__":
    cli.run_command(main, PROG, COMMANDS, "python -m jaxfair.sample fit --config=configs/demo.py",
                    default_config="configs/demo.py")
