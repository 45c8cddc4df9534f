"""The write lock: one process writes an index at a time (an index, a repair, an optimize).

Every writer takes it here, so "busy" is one error with one message wherever it happens.
"""

from __future__ import annotations

from pathlib import Path

from filelock import FileLock, Timeout
from sift.errors import WriterBusy
from sift.index.manifest import LOCK_FILE


def acquire_write_lock(directory: Path, wait: float = 0.0) -> FileLock:
    """The index's write lock, held; WriterBusy if another process still holds it after `wait`
    seconds (at once by default)."""
    lock = FileLock(str(directory / LOCK_FILE))
    try:
        lock.acquire(timeout=wait, poll_interval=0.05)
    except Timeout:
        waited = f" (waited {wait:g} s)" if wait else ""
        raise WriterBusy(
            f"another sift process is writing to {directory}{waited}; wait for it to finish"
        ) from None
    return lock


def writer_busy(directory: Path) -> bool:
    """True while some process holds the index's write lock."""
    try:
        lock = acquire_write_lock(directory)
    except WriterBusy:
        return True
    lock.release()
    return False
