"""The entry helper shared by the CLI and the scripts in ``jobs/``: errors to exit codes.

Small on purpose: a job imports this, not the CLI's argument parser and commands.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from rlm_pipeline.errors import ExpressionError, InputError, RLMPipelineError

__all__ = ["exit_code", "run_guarded"]


def exit_code(exc: RLMPipelineError) -> int:
    """2 for bad arguments or input, 1 for model and runtime failures.

    Examples
    --------
    >>> exit_code(InputError("no such file")), exit_code(RLMPipelineError("boom"))
    (2, 1)
    """
    return 2 if isinstance(exc, InputError | ExpressionError) else 1


def run_guarded(prog: str, func: Callable[[], int]) -> int:
    """Run a script's body; an :class:`RLMPipelineError` becomes one stderr line and an exit code.

    For the scripts in ``jobs/``, which have their own argument parsers.

    Examples
    --------
    >>> run_guarded("job", lambda: 0)
    0
    """
    try:
        return func()
    except RLMPipelineError as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"{prog}: error: {first_line}", file=sys.stderr)
        return exit_code(exc)
