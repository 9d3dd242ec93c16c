"""Two benchmark processes taking turns, one step each, over a pair of pipes per process.

The process that gives the turns (``take_turns``) writes ``GO`` to one process and waits for its ``DONE``
(or for it to exit), then does the same with the other; a process that has exited is skipped, so the
other goes on alone. In a row's process, ``StepTurns.wait`` blocks until it is given the turn and
``step_done`` ends a step, times it from the turn being given, and waits for the next turn: the two
processes' steps never overlap, and neighbouring steps see nearly the same machine.
"""
from __future__ import annotations

import os
import subprocess
import time

GO, DONE = b"g", b"d"


class StepTurns:
    """A row's side: ``fds`` is "READ,WRITE", the ends of its two pipes that the row's process holds."""

    def __init__(self, fds: str):
        self._read, self._write = (int(fd) for fd in fds.split(","))
        self._given_at = 0.0
        self.seconds: list[float] = []  # each step's, from being given the turn to its end

    def wait(self) -> None:
        if os.read(self._read, 1) != GO:
            raise SystemExit("the process giving the turns has gone")
        self._given_at = time.perf_counter()

    def step_done(self) -> None:
        self.seconds.append(time.perf_counter() - self._given_at)
        os.write(self._write, DONE)
        self.wait()


def launch(command: list[str], **popen_args) -> tuple[subprocess.Popen, tuple[int, int]]:
    """Start ``command`` with ``--turn-fds READ,WRITE`` added, the row's ends of two new pipes; returns
    the process and the giver's ends (write GO, read DONE) for ``take_turns``. Only the row holds its
    ends, so its exit reads as end of file here."""
    go_read, go_write = os.pipe()
    done_read, done_write = os.pipe()
    try:
        process = subprocess.Popen(command + ["--turn-fds", f"{go_read},{done_write}"],
                                   pass_fds=(go_read, done_write), **popen_args)
    except BaseException:
        os.close(go_write)
        os.close(done_read)
        raise
    finally:
        os.close(go_read)
        os.close(done_write)
    return process, (go_write, done_read)


def take_turns(givers: list[tuple[int, int]]) -> None:
    """Give each process its step in turn until every one has exited; closes the giver's ends."""
    active = list(givers)
    while active:
        for ends in list(active):
            go_write, done_read = ends
            try:
                os.write(go_write, GO)
                finished = os.read(done_read, 1) != DONE  # b"": it exited (its last step's turn ran out)
            except BrokenPipeError:
                finished = True
            if finished:
                active.remove(ends)
                os.close(go_write)
                os.close(done_read)
