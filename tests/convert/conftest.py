"""Fixtures of the converter tests."""

import pytest
from absl import flags

from jaxfair.convert import __main__ as convert_main


@pytest.fixture
def convert_cli(capsys):
    """Runs ``python -m jaxfair.convert ARGS`` in-process: returns (exit code, stdout, stderr)."""

    def run(*args):
        flags.FLAGS.unparse_flags()
        flags.FLAGS(["convert", *args])
        code = 0
        try:
            convert_main.main()
        except SystemExit as e:
            code = e.code
        out, err = capsys.readouterr()
        return code, out, err

    return run
