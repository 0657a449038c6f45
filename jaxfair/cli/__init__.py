"""Shared plumbing of the absl entry points: one-line errors with exit status 2.

ml_collections loads config files and applies ``--config.x=...`` overrides while flags are
defined and parsed, raising whatever the config module raises; ``run`` turns every such
input error into one line on stderr and exit status 2 instead of a traceback. Inside a
command, ``reporting`` does the same for the library's user errors (``USER_ERRORS``).

Example (an entry point's main):
  with cli.reporting(PROG):
      summary = library.run(config, workdir)
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Callable, Iterator

import jax
import jax.numpy as jnp
import ml_collections
from absl import app, flags
from absl import logging as absl_logging
from ml_collections import config_flags

from jaxfair.errors import JaxfairError

# Libraries whose INFO lines drown the job's own progress (orbax logs every read and write).
_QUIET = ("/orbax/", "/jax/_src/xla_bridge.py")


class _QuietLibraries(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or not any(q in record.pathname
                                                             for q in _QUIET)


def device_summary() -> str:
    """The devices jax computes on, and its default float type, for a job's first log line."""
    return ", ".join(f"{d.platform}:{d.id}" for d in jax.devices()) + \
        f" (default float {jnp.zeros(()).dtype})"


def fail(prog: str, msg: object) -> None:
    """Prints ``prog: error: msg`` (one line) to stderr and exits with status 2."""
    text = " ".join(str(msg).split())  # multi-line library messages become one line
    print(f"{prog}: error: {text}", file=sys.stderr)
    sys.exit(2)


# What a command reports as one line, exit status 2: jaxfair's own errors (JaxfairError:
# bad targets, checkpoints, datasets, plans, existing outputs, unreached targets), the
# ValueErrors of settings validation (and of the checkpoint readers), and missing inputs.
USER_ERRORS = (JaxfairError, ValueError, FileNotFoundError)


@contextlib.contextmanager
def reporting(prog: str, os_error: Callable[[OSError], str] | None = None) -> Iterator[None]:
    """Runs the body; a ``USER_ERRORS`` exception becomes ``prog: error: message``, exit 2.

    Args:
      prog: name used in error messages, e.g. 'jaxfair.generate'.
      os_error: for commands that write: the one-line message of any other OSError
        (unwritable directory, full disk); None lets it propagate.
    """
    try:
        yield
    except USER_ERRORS as e:
        fail(prog, e)
    except OSError as e:
        if os_error is None:
            raise
        fail(prog, os_error(e))


def run(main: Callable[..., None], prog: str, default_config: str | None = None) -> None:
    """Runs ``main`` under absl with input errors reported as one line, exit status 2.

    Args:
      main: called as ``main(config)`` when ``default_config`` is given (the parsed, locked
        ``--config`` ConfigDict), else as ``main()``.
      prog: name used in error messages, e.g. 'jaxfair.generate'.
      default_config: path of the default ``--config`` file, or None for no config flag.
    """
    holder = None
    if default_config is not None:
        try:
            holder = config_flags.DEFINE_config_file(
                "config", default_config, "Config file; override fields with --config.x=v.",
                lock_config=True)
        except Exception as e:  # bad --config.x override seen while defining the flag
            fail(prog, f"bad --config: {type(e).__name__}: {e}")

    def parse(argv):
        try:
            rest = flags.FLAGS(argv)
            if holder is not None:
                config = holder.value  # loading errors surface on first access
                if not isinstance(config, ml_collections.ConfigDict):
                    _ = config.keys  # a failed load raises its own error on any access
                    raise ValueError("get_config() must return a ConfigDict")
        except Exception as e:
            fail(prog, e if isinstance(e, (flags.Error, OSError)) else f"{type(e).__name__}: {e}")
        return rest

    def checked_main(argv):
        if len(argv) > 1:
            fail(prog, f"unexpected arguments: {' '.join(argv[1:])}")
        if holder is None:
            main()
        else:
            main(holder.value)

    absl_logging.get_absl_handler().addFilter(_QuietLibraries())
    app.run(checked_main, flags_parser=parse)


def run_command(main: Callable[[str, ml_collections.ConfigDict], None], prog: str,
                commands: tuple[str, ...], example: str, default_config: str) -> None:
    """``run`` for entry points whose first argument names a subcommand (``python -m
    jaxfair.sample fit ...``): ``main(command, config)``; an unknown or missing command is
    one line naming the valid ones, exit status 2."""
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        fail(prog, f"first argument must be one of {', '.join(commands)}, e.g. {example}")
    command = sys.argv.pop(1)
    run(lambda config: main(command, config), prog, default_config=default_config)
