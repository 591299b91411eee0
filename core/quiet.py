"""Silencing the warnings of libraries (Pulser, QuTiP) that users cannot act on, one thread at a
time.

`warnings.catch_warnings()` swaps the process-wide filter list and puts it back on exit: two
request threads inside it at once restore each other's filters, and a third thread's warnings
go missing or reappear. `quiet()` instead marks the current thread, and one hook on
`warnings.showwarning`, installed once, drops what a marked thread would show.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_local = threading.local()
_lock = threading.Lock()


@contextmanager
def quiet() -> Iterator[None]:
    """Inside the block, warnings raised by this thread are not shown."""
    _install()
    depth = getattr(_local, "depth", 0)
    _local.depth = depth + 1
    try:
        yield
    finally:
        _local.depth = depth


def _install() -> None:
    # Reinstalled when something replaced the hook since (a test harness recording warnings):
    # the hook forwards whatever it does not drop to the one it replaced.
    if getattr(warnings.showwarning, "_tweezer_quiet", False):
        return  # installed: every build of every request comes here, no lock taken
    with _lock:
        current = warnings.showwarning
        if getattr(current, "_tweezer_quiet", False):
            return

        def show(*args: Any, **kwargs: Any) -> None:
            if getattr(_local, "depth", 0):
                return
            current(*args, **kwargs)

        show._tweezer_quiet = True  # type: ignore[attr-defined]
        warnings.showwarning = show
