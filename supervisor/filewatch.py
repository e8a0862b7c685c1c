"""File events through watchfiles: one thread that tells when files in some folders change.

The sidecar's completion watcher (``watch``) and the ``--wait-ready`` gates
(``gates``) use it; both only take it as a reason to look again.
"""

import threading
from collections.abc import Callable
from pathlib import Path

# watchfiles cannot wake a thread: its watches queue the kernel's events, and a
# thread must come and look. The watcher looks every WATCH_PERIOD seconds, each
# look one wake-up and a PEEK_MS sleep: a touched marker is seen after half a
# period on average, for about 6 looks a second, and only until every
# awaited container holds its lock.
WATCH_PERIOD = 0.17
PEEK_MS = 1
WATCH_DEBOUNCE_MS = 200  # a burst of events still growing is reported in one
# The --wait-ready gates look this often while they wait for a peer's ``.ready``:
# a Job's start waits on them, and they wait only until it is there.
GATE_PERIOD = 0.01


def follow_files(
    paths: tuple[Path, ...],
    stop: threading.Event,
    changed: Callable[[], None],
    period: float = WATCH_PERIOD,
) -> None:
    """Call ``changed`` after each burst of file events in ``paths``, until ``stop``.

    watchfiles' Rust watcher is used directly (pyproject pins the major version): its
    public ``watch()`` cannot say when the inotify watches exist, and a file
    created while they are being set up would wait for the rescan; here
    ``changed`` is called once they exist. Between looks the thread sleeps on
    ``stop``, so a stop ends it at once.
    """
    from watchfiles._rust_notify import RustNotify  # noqa: PLC0415 - only when watching

    # (paths, debug, force_polling, poll_delay_ms, recursive, ignore_permission_denied)
    with RustNotify([str(p) for p in paths], False, False, 300, False, True) as notify:
        changed()  # whatever happened while the watches were being set up
        while not stop.wait(period):
            # What was queued since the last look: "timeout" after PEEK_MS if nothing.
            if isinstance(notify.watch(WATCH_DEBOUNCE_MS, PEEK_MS, PEEK_MS, None), set):
                changed()
