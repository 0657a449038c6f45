r"""Reports: ``python -m jaxfair.report audit|dataset`` (config: configs/demo.py).

  python -m jaxfair.report audit --config=configs/demo.py --num=5000 --out=out/audit
  python -m jaxfair.report dataset --dataset=out/demo

``audit`` samples the generator without guidance and reports how the classifier splits the
samples per attribute and per group, with 95% Wilson intervals (terminal table,
audit.json, audit.png; jaxfair.report.audit). ``dataset`` writes DIR/report/ for a generated
dataset, complete or partial: counts vs. quota, re-classification of images read back from
disk, target probabilities, non-target attributes per group, contact sheets, diversity,
each group against an unguided sample of it (faithfulness), and an index.html with
everything inline (jaxfair.report.dataset_report). Settings: ``config.report``; both
commands run their batched steps (``report.batch_size``) in the largest batch within the
memory budget (``--config.memory_budget_gb``, jaxfair.judge.sizing). Bad input: one line
on stderr, exit status 2, nothing written.
"""

from __future__ import annotations

from absl import flags, logging

from jaxfair import cli
from jaxfair.judge import sizing
from jaxfair.report import audit, dataset_report

PROG = "jaxfair.report"
COMMANDS = ("audit", "dataset")

_NUM = flags.DEFINE_integer("num", None, "audit: unguided samples (default: config.report.num).")
_OUT = flags.DEFINE_string("out", None, "Output directory (audit default: "
                           "config.report.audit_dir; dataset default: DATASET/report).")
_DATASET = flags.DEFINE_string("dataset", None, "dataset: the generated dataset directory.")
_CLASSIFIER = flags.DEFINE_string("classifier", None, "dataset: classifier checkpoint "
                                  "(default: the one plan.json names).")
_GENERATOR = flags.DEFINE_string("generator", None, "dataset: generator checkpoint, for the "
                                 "unguided reference and datasets without image files "
                                 "(default: the one plan.json names).")


def main(command: str, config) -> None:
    logging.info("devices: %s", cli.device_summary())
    logging.info("config:\n%s", config)
    with cli.reporting(PROG):
        if command == "audit":
            out = _OUT.value or config.report.audit_dir
            num = _NUM.value if _NUM.value is not None else config.report.num
            result = audit.run(config, out, num, log=logging.info)
            print(result["table"])
            print(f"wrote the audit of {num} samples to {out} ({result['seconds']:.1f} s)")
        else:
            if not _DATASET.value:
                cli.fail(PROG, "dataset needs --dataset=DIR")
            report = dataset_report.run(
                _DATASET.value, config.report, _OUT.value, _CLASSIFIER.value,
                _GENERATOR.value, log=logging.info,
                budget_bytes=sizing.budget_bytes(config.memory_budget_gb)[0])
            out = _OUT.value or f"{_DATASET.value}/report"
            print(f"wrote the report of {report['identities']} identities and "
                  f"{report['images']} images ({'complete' if report['complete'] else 'partial'}"
                  f" dataset) to {out}/index.html")


if __name__ == "__main__":
    cli.run_command(main, PROG, COMMANDS,
                    "python -m jaxfair.report audit --config=configs/demo.py --num=5000",
                    default_config="configs/demo.py")
