"""The project's error base class.

Every user-facing error derives from ``JaxfairError``; the entry points turn it into one line
on stderr and exit status 2 (``jaxfair.cli.fail``), never a traceback.
"""

from __future__ import annotations


class JaxfairError(Exception):
    """Base of every user-facing jaxfair error (bad input files, bad settings).

    Entry points turn it into one line (``prog: error: message``) and exit status 2.
    """
