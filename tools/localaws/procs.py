"""Child processes of the stand-in: started so they die with it, stopped by their own ids."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import queue
import threading
from concurrent.futures import Future
from typing import IO

_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL("libc.so.6", use_errno=True)
_children: dict[int, subprocess.Popen] = {}
_lock = threading.Lock()


def _die_with_parent() -> None:
    # If the launcher is SIGKILLed, the kernel sends SIGKILL to this child: nothing is left behind.
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


# PR_SET_PDEATHSIG fires when the *thread* that forked the child exits, not the process. Children
# are therefore forked by one long-lived thread, never by a short-lived request thread.
_requests: queue.Queue = queue.Queue()


def _spawner() -> None:
    while True:
        future, args = _requests.get()
        try:
            future.set_result(_popen(*args))
        except BaseException as e:  # handed back to the caller
            future.set_exception(e)


threading.Thread(target=_spawner, name="localaws-spawner", daemon=True).start()


def spawn(argv: list[str], env: dict[str, str], log: IO[bytes] | int, cwd: str | None = None) -> subprocess.Popen:
    future: Future = Future()
    _requests.put((future, (argv, env, log, cwd)))
    return future.result()


def _popen(argv: list[str], env: dict[str, str], log: IO[bytes] | int, cwd: str | None) -> subprocess.Popen:
    proc = subprocess.Popen(
        argv,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=cwd,
        preexec_fn=_die_with_parent,
    )
    with _lock:
        _children[proc.pid] = proc
    return proc


def forget(proc: subprocess.Popen) -> None:
    with _lock:
        _children.pop(proc.pid, None)


def stop_all() -> None:
    """Stops every child this process started: SIGTERM, then SIGKILL for the ones that linger."""
    with _lock:
        procs = list(_children.values())
        _children.clear()
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout=3)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True
