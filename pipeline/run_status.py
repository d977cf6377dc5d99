"""Every run ends with its true status: signals, and which process owns a RUNNING run.

The parts of a run's life-cycle bookkeeping that need no mlflow (so none of this costs the
1.8 s import; ``tracking.py``, the only module that imports mlflow, builds on these):

- ``handle_signals``: SIGTERM (what ``kill`` and schedulers send) raises ``RunInterrupted``, a
  ``KeyboardInterrupt``, so a run ends KILLED exactly as on Ctrl-C.
- ``process_tags`` / ``dead_reason``: every run records which process owns it; a RUNNING run
  whose process is provably gone (same host and pid namespace, pid not alive or reused) was
  left behind by a hard death (SIGKILL, power loss) and can be marked FAILED.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

HOST, PID, PID_START, PID_SPACE = ("pipeline.host", "pipeline.pid", "pipeline.pid_start",
                                   "pipeline.pid_space")


# ----------------------------------------------------------------------------- signals
class RunInterrupted(KeyboardInterrupt):
    """Raised by the SIGTERM (and SIGINT) handler: the run ends KILLED, as on Ctrl-C.

    A ``KeyboardInterrupt`` on purpose: every place that already treats Ctrl-C as "stop and
    end the run KILLED" (``Tracker.__exit__``, Hydra, the mains) treats SIGTERM the same way.
    """

    def __init__(self, signum: int):
        self.signum = signum
        super().__init__(f"interrupted by {signal.Signals(signum).name}")


_received: int | None = None


def _on_signal(signum: int, frame: object) -> None:
    global _received
    _received = signum
    raise RunInterrupted(signum)


def handle_signals() -> None:
    """Make SIGTERM (and Ctrl-C) raise ``RunInterrupted`` in the main thread.

    Python's default SIGTERM kills the process on the spot: no ``finally``, no ``atexit``, the
    run stays RUNNING for ever. A handler left ignored (``SIG_IGN``, e.g. by ``nohup`` for
    SIGINT) stays ignored. A no-op outside the main thread (signal handlers live there only)
    and when already installed.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_IGN:
        signal.signal(signal.SIGTERM, _on_signal)
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _on_signal)


def interrupted_by() -> int | None:
    """The signal that interrupted this process (SIGINT or SIGTERM), or None."""
    return _received


@contextlib.contextmanager
def shielded() -> Iterator[None]:
    """Hold SIGINT/SIGTERM back while the run's final status is written.

    An impatient second Ctrl-C must not cut ``end_run`` short and leave the run RUNNING. A
    signal that arrives meanwhile is recorded and raised again right after, to the handler
    that was in place (which then raises, or ends the process as it would have). Python-level
    handlers, not a signal mask: a process-directed signal may land on any thread (mlflow and
    numba start some), but Python handlers always run in the main thread.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    old = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        handler = signal.getsignal(signum)
        if handler is not None and handler is not signal.SIG_IGN:
            old[signum] = handler
            signal.signal(signum, lambda s, _frame: held.append(s))
    try:
        yield
    finally:
        for signum, handler in old.items():
            signal.signal(signum, handler)
        if held:
            signal.raise_signal(held[0])


# ----------------------------------------------------------------------------- run owners
def _stat(pid: int) -> list[str] | None:
    """Fields 3.. of /proc/<pid>/stat (state first), or None (no such process, or no /proc)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rfind(")") + 2:].split()  # the name (field 2) may hold spaces and ')'


def _pid_space() -> str:
    """Boot id and pid namespace: where a recorded pid names an entry of this process table."""
    try:
        ns = os.readlink("/proc/self/ns/pid")
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:  # not Linux: the pid (and host) alone
        return ""
    return f"{boot}/{ns}"


def process_tags() -> dict[str, str]:
    """Tags naming the process that owns a run: host, pid, start time, pid namespace.

    The start time (/proc/<pid>/stat field 22, clock ticks since boot) tells a live pid that
    was reused by another process from the one that opened the run.
    """
    tags = {HOST: socket.gethostname(), PID: str(os.getpid())}
    fields = _stat(os.getpid())
    if fields and len(fields) > 19:
        tags[PID_START] = fields[19]
    space = _pid_space()
    if space:
        tags[PID_SPACE] = space
    return tags


def dead_reason(tags: dict[str, str]) -> str | None:
    """Why the process that recorded ``tags`` is provably gone, or None if it may be alive.

    Only a run of this host, with a readable pid, in this pid namespace (or from an earlier
    boot of this host) can be judged; anything else (other hosts, other containers, runs other
    tools made) is None: never touched.
    """
    me = process_tags()
    host = tags.get(HOST)
    try:
        pid = int(tags.get(PID, ""))
    except ValueError:
        return None
    if host != me[HOST] or pid <= 0:
        return None
    found = f"found by pid {pid} on host {host}"
    space, mine = tags.get(PID_SPACE, ""), me.get(PID_SPACE, "")
    if space and mine and space != mine:
        if space.split("/")[0] != mine.split("/")[0]:
            return (f"the process {pid} died without ending the run ({found}: the host "
                    f"rebooted since)")
        return None  # same kernel, another pid namespace (a container): not ours to see
    if tags.get(PID_START) == me.get(PID_START) and pid == os.getpid():
        return None  # this very process
    fields = _stat(pid)
    if not _alive(pid, fields):
        return f"the process {pid} died without ending the run ({found}: no such process)"
    start = tags.get(PID_START)
    if start and fields is not None and len(fields) > 19 and fields[19] != start:
        return (f"the process {pid} died without ending the run ({found}: that pid now "
                f"belongs to another process, started at tick {fields[19]}, not {start})")
    return None


def _alive(pid: int, fields: list[str] | None) -> bool:
    if fields is not None and fields[0] in ("Z", "X"):  # exited, not yet reaped by its parent
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True
