"""The one base class of every user-facing jaxfair error.

An entry point catches ``JaxfairError`` (``jaxfair.cli.reporting``) and prints its message as
one line on stderr, exit status 2. Subclasses keep a second, standard base (``ValueError``,
``FileExistsError``, ``RuntimeError``) so that code catching those keeps working.
"""


class JaxfairError(Exception):
    """An error the user can fix (bad input, settings or files); its message says how."""
