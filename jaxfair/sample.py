r"""The distribution method: ``python -m jaxfair.sample fit|draw|hybrid|evaluate``.

  python -m jaxfair.sample fit --config=configs/demo.py --workdir=out/dist
  python -m jaxfair.sample draw --workdir=out/dist --counts="tone=dark,hair=long:64" --verify
  python -m jaxfair.sample hybrid --workdir=out/dist --config.search.space=w
  python -m jaxfair.sample evaluate --workdir=out/dist

``fit`` labels W with the classifier, trains the autoencoder and one Gaussian mixture per
group, and saves them to the workdir (``config.distribution``; see
jaxfair.distribution.fit). ``draw`` samples each group of ``--counts`` from its
mixture, decodes and renders; ``--verify`` keeps only samples the classifier puts in the
group. ``hybrid`` runs the search of ``config.search`` plain and started from each group's
mixture (with sigma_init, and with the mixture's spread), same budget
(jaxfair.lab.hybrid). ``evaluate`` measures purity (classifier
and ground truth), samples/s and distinct share on the demo world, beside the search
engine (jaxfair.lab.distribution_eval). Bad input: one line on stderr, exit status 2,
nothing written.
"""

from __future__ import annotations

from absl import flags, logging

from jaxfair import cli
from jaxfair.convert.torch_pickle import CheckpointError
from jaxfair.distribution import draw as distribution_draw
from jaxfair.distribution import fit as distribution
from jaxfair.io.checkpoints import CheckpointDirError
from jaxfair.judge.attributes import TargetError
from jaxfair.lab import distribution_eval, hybrid

PROG = "jaxfair.sample"
COMMANDS = ("fit", "draw", "hybrid", "evaluate")

_WORKDIR = flags.DEFINE_string("workdir", None, "Fitted model directory (default: "
                               "config.distribution.workdir).")
_COUNTS = flags.DEFINE_string("counts", None, "draw: 'target:count;...', e.g. "
                              "'tone=dark,hair=long:100' (default: config.distribution.counts).")
_VERIFY = flags.DEFINE_bool("verify", False, "draw: keep only samples the classifier puts in "
                            "the group (threshold of the fit), drawing more until counts are met.")
_OUT = flags.DEFINE_string("out", None, "draw, hybrid, evaluate: output directory (default: "
                           "<workdir>/draw, <workdir>/hybrid, <workdir>/evaluate).")


def _print_draw(summary: dict, out: str) -> None:
    for name, s in summary["groups"].items():
        print(f"{name}: {s['count']} kept of {s['drawn']} drawn, purity "
              f"{s['purity_before']:.3f} -> {s['purity_after']:.3f}, "
              f"distinct {s['distinct_share']:.3f}, {s['samples_per_s']} samples/s")
    print(f"wrote {summary['num_images']} images to {out}")


def _print_hybrid(summary: dict, out: str) -> None:
    for name, arms in summary["groups"].items():
        print(name + ": " + "; ".join(
            f"{a} first accept at generation {r['median_first_accept_generation']} (median), "
            f"{r['accepted_per_s']} accepted/s, {r['distinct_accepted']} distinct"
            for a, r in arms.items()))
    print(f"wrote {out}/summary.json")


def _print_evaluate(summary: dict, out: str) -> None:
    for name, arms in summary["groups"].items():
        u, v = arms["unverified"], arms["verified"]
        searches = "; ".join(f"{a} truth {arms[a].get('ground_truth_purity')}, "
                             f"{arms[a]['accepted_per_s']} accepted/s"
                             for a in ("search", *hybrid.ARMS[1:]) if a in arms)
        print(f"{name}: unverified purity {u['classifier_purity']:.3f} (classifier) "
              f"{u['ground_truth_purity']:.3f} (truth), verified truth "
              f"{v['ground_truth_purity']:.3f}; {searches}")
    print(f"wrote {out}/summary.json")


def main(command: str, config) -> None:
    dc = config.distribution
    workdir = _WORKDIR.value or dc.workdir
    out = _OUT.value or f"{workdir}/{command}"
    logging.info("devices: %s", cli.device_summary())
    logging.info("config:\n%s", config)
    try:
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
                dc.max_draw_factor, dc.image_format, dc.duplicate_radius, log=logging.info), out)
        elif command == "hybrid":
            _print_hybrid(hybrid.run(config, workdir, out, log=logging.info), out)
        else:
            _print_evaluate(distribution_eval.run(config, workdir, out, log=logging.info), out)
    except (ValueError, FileExistsError, CheckpointError, CheckpointDirError,
            FileNotFoundError, TargetError) as e:
        cli.fail(PROG, e)


if __name__ == "__main__":
    cli.run_command(main, PROG, COMMANDS, "python -m jaxfair.sample fit --config=configs/demo.py",
                    default_config="configs/demo.py")
