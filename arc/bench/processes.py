"""Each measurement in a process of its own, so that peak memory, thread settings and compile caches do not mix."""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Callable
from queue import Empty

from arc.errors import InvalidInputError


def in_process(target: Callable, *args) -> dict:
    """``target(*args, queue)`` in a fresh (spawned) process: the dict it puts on ``queue``, or its user error
    (``InvalidInputError``) raised here. A process that dies without a result is a ``RuntimeError``."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_reporting_errors, args=(target, *args, queue))
    proc.start()
    while True:
        try:
            result = queue.get(timeout=5)
            break
        except Empty:
            if not proc.is_alive():
                raise RuntimeError(
                    f"the benchmark process died (exit status {proc.exitcode}); see its traceback above"
                ) from None
    proc.join()
    if "user_error" in result:
        raise InvalidInputError(result["user_error"])
    return result


def _reporting_errors(target: Callable, *args) -> None:
    try:
        target(*args)
    except InvalidInputError as e:
        args[-1].put({"user_error": str(e)})
