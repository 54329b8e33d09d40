"""How the entry points report a user's mistake: one line on stderr and exit status 2; a bug keeps its traceback.

``--debug`` (or ``ARC_DEBUG=1``; for ``arc-train`` also ``HYDRA_FULL_ERROR=1``) shows the traceback of a user
error too.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from arc.errors import UserError

EXIT_USER_ERROR = 2


def find_user_error(err: BaseException | None) -> UserError | None:
    """``err`` itself or the first ``UserError`` it was raised from (Hydra wraps errors raised by ``_target_``s)."""
    while err is not None:
        if isinstance(err, UserError):
            return err
        err = err.__cause__
    return None


def debug_requested(*env_vars: str) -> bool:
    return any(os.environ.get(name, "") not in ("", "0") for name in ("ARC_DEBUG", *env_vars))


def report_user_errors(prog: str, run: Callable[[], object], debug: bool = False) -> None:
    """Call ``run()``; if it raises a user error, print ``<prog>: error: <message>`` and exit with status 2."""
    try:
        run()
    except Exception as err:
        user_error = find_user_error(err)
        if user_error is None or debug:
            raise
        print(f"{prog}: error: {user_error}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
