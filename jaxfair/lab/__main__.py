r"""Demo-only experiments on a distribution fit: ``python -m jaxfair.lab hybrid|evaluate``.

  python -m jaxfair.lab hybrid --workdir=out/dist --config.search.space=w
  python -m jaxfair.lab evaluate --workdir=out/dist

``hybrid`` runs the search of ``config.search`` plain and started from each group's mixture
(with sigma_init, and with the mixture's spread), same budget (jaxfair.lab.hybrid).
``evaluate`` measures purity (classifier and ground truth), samples/s and distinct share on
the demo world, beside the search engine (jaxfair.lab.distribution_eval). The fit comes from
``python -m jaxfair.sample fit``. Bad input: one line on stderr, exit status 2, nothing
written.
"""

from __future__ import annotations

from absl import flags, logging

from jaxfair import cli
from jaxfair.lab import distribution_eval, hybrid

PROG = "jaxfair.lab"
COMMANDS = ("hybrid", "evaluate")

_WORKDIR = flags.DEFINE_string("workdir", None, "Fitted model directory (default: "
                               "config.distribution.workdir).")
_OUT = flags.DEFINE_string("out", None, "Output directory (default: <workdir>/hybrid, "
                           "<workdir>/evaluate).")


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
    workdir = _WORKDIR.value or config.distribution.workdir
    out = _OUT.value or f"{workdir}/{command}"
    logging.info("devices: %s", cli.device_summary())
    logging.info("config:\n%s", config)
    with cli.reporting(PROG):
        if command == "hybrid":
            _print_hybrid(hybrid.run(config, workdir, out, log=logging.info), out)
        else:
            _print_evaluate(distribution_eval.run(config, workdir, out, log=logging.info), out)


if __name__ == "__main__":
    cli.run_command(main, PROG, COMMANDS, "python -m jaxfair.lab hybrid --config.search.space=w",
                    default_config="configs/demo.py")
