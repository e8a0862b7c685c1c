"""Reaping: as PID 1 of its own PID namespace, and as a child subreaper outside one.

Zombies are looked for from outside, in /proc: a process in state ``Z`` whose
parent is the supervisor is one it has not reaped.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import psutil
import pytest

from tests.conftest import StartContainer
from tests.support import can_unshare, kill_leftovers, read_json, wait_until

ORPHANS = 1000

# COMMAND for the PID-1 test: each ( ... &) leaves an orphan that exits at once.
# The orphans hold the pipe to cat open until they exit, so "orphans gone" means
# every one has exited. Then it stays up until SIGUSR1, so the test can look for
# zombies meanwhile.
LEAVE_ORPHANS = f"""
trap 'exit 7' USR1
{{ for i in $(seq {ORPHANS}); do (exit 0 &); done; }} | cat
echo "orphans gone: {ORPHANS}"
sleep 600 & wait $!
exit 9
"""


def zombies_of(parent: int) -> list[int]:
    """Pids of unreaped children of ``parent``, read from /proc/PID/stat."""
    zombies = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        state, ppid = stat[stat.rindex(")") + 2 :].split()[:2]
        if state == "Z" and int(ppid) == parent:
            zombies.append(int(entry.name))
    return zombies


@pytest.mark.skipif(not can_unshare(), reason="needs unshare --pid --fork --mount-proc")
def test_pid1_reaps_a_thousand_orphans(start: StartContainer, shared: Path) -> None:
    main = start("main", "--dir", shared, "--", "sh", "-c", LEAVE_ORPHANS)
    main.expect(f"orphans gone: {ORPHANS}")
    supervisor = main.supervisor_pid
    assert read_json(shared / "main.started")["pid"] == 1  # really PID 1 in there

    wait_until(lambda: not zombies_of(supervisor), what="every orphan reaped")
    assert main.running

    main.signal(signal.SIGUSR1)
    assert main.wait() == 7
    assert read_json(shared / "main.done")["exit_code"] == 7


def test_subreaper_adopts_and_reaps_an_orphan(start: StartContainer, shared: Path) -> None:
    """Outside a PID namespace the orphan would go to init (or the test) but for the subreaper."""
    command = '(sleep 600 & echo "orphan (pid: $!)"); echo parent-gone; exec sleep 600'
    main = start("main", "--dir", shared, "--", "sh", "-c", command, namespace=False)
    orphan = int(main.expect(r"orphan \(pid: (\d+)\)")[1])
    main.expect("parent-gone")
    supervisor = main.supervisor_pid
    assert os.getpid() != supervisor

    try:
        wait_until(lambda: psutil.Process(orphan).ppid() == supervisor, what="the orphan adopted")
        os.kill(orphan, signal.SIGKILL)
        wait_until(lambda: not psutil.pid_exists(orphan), what="the orphan reaped")
        assert main.running
    except BaseException:
        kill_leftovers(main, orphan)
        raise

    main.signal(signal.SIGTERM)
    assert main.wait() == 143
