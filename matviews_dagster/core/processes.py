"""Is a process still there? One answer for the embedded server's postmaster and a queued run's worker."""

from __future__ import annotations

import os


def process_exists(pid: int) -> bool:
    """Whether process ``pid`` exists on this host (signal 0: nothing is sent). Another user's
    process counts: the kernel refuses the signal (``EPERM``) only for a process that exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
