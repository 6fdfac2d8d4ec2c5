"""Child processes that must not outlive us (Linux PR_SET_PDEATHSIG; a no-op elsewhere)."""
from __future__ import annotations

import signal
from collections.abc import Callable


def die_with_parent(sig: int = signal.SIGKILL) -> Callable[[], None]:
    """A `preexec_fn`: the child gets `sig` when the thread that started it ends."""
    def arm() -> None:
        try:
            import ctypes
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(sig))  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    return arm
