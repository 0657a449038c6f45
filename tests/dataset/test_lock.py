"""The work-directory lock: refused while held (naming the holder), free again after the
holder is killed with SIGKILL, released (and its file removed) at the end of a block."""

import os
import signal
import socket
import subprocess
import sys

import pytest

from jaxfair.dataset import lock

HOLD = ("import sys, time\n"
        "from jaxfair.dataset import lock\n"
        "lock.acquire(sys.argv[1])\n"
        "print('held', flush=True)\n"
        "time.sleep(600)\n")


def holder(workdir):
    """A process that holds ``workdir``'s lock until killed."""
    p = subprocess.Popen([sys.executable, "-c", HOLD, workdir], stdout=subprocess.PIPE,
                         text=True)
    assert p.stdout.readline().strip() == "held"
    return p


def test_refused_while_another_process_holds_it_free_after_kill_9(tmp_path):
    d = str(tmp_path / "ds")
    p = holder(d)
    try:
        with pytest.raises(lock.WorkdirBusy) as e:
            lock.acquire(d)
        msg = str(e.value)
        assert d in msg and f"pid {p.pid} on host {socket.gethostname()}" in msg
        assert "\n" not in msg and isinstance(e.value, OSError)
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    assert os.path.exists(os.path.join(d, lock.LOCK))  # the file stays, the lock does not
    held = lock.acquire(d)
    with open(held.path) as f:
        assert f.read() == f"pid {os.getpid()} on host {socket.gethostname()}"
    lock.release(held)
    assert not os.path.exists(os.path.join(d, lock.LOCK))


def test_one_holder_at_a_time_even_in_one_process(tmp_path):
    d = str(tmp_path)
    with lock.hold(d), pytest.raises(lock.WorkdirBusy, match=f"pid {os.getpid()}"):
        lock.acquire(d)
    with lock.hold(d):  # released at the end of the block
        pass


def test_a_run_releases_its_lock_when_it_fails(tmp_path):
    d = str(tmp_path)
    with pytest.raises(RuntimeError, match="boom"), lock.hold_for_run(d, 0, 1) as held:
        assert held is not None
        raise RuntimeError("boom")
    lock.release(lock.acquire(d))


def test_a_racer_holding_the_removed_file_does_not_count(tmp_path):
    d = str(tmp_path)
    first = lock.acquire(d)
    # A job that opened the lock file just before the holder removed it ...
    stale = os.open(first.path, os.O_RDWR)
    lock.release(first)
    import fcntl

    fcntl.flock(stale, fcntl.LOCK_EX | fcntl.LOCK_NB)  # ... locks a file no path names,
    try:
        second = lock.acquire(d)  # so the next job still gets the directory
        lock.release(second)
    finally:
        os.close(stale)


RUN = ("import sys\n"
       "import jax\n"
       "jax.distributed.initialize(sys.argv[2], 2, int(sys.argv[3]))\n"
       "from jaxfair.dataset import lock\n"
       "try:\n"
       "    with lock.hold_for_run(sys.argv[1], jax.process_index(), 2):\n"
       "        print('held')\n"
       "except lock.WorkdirBusy as e:\n"
       "    print('refused:', e)\n")


def test_a_refused_multi_process_run_stops_in_every_process(tmp_path):
    d = str(tmp_path / "ds")
    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    p = holder(d)
    env = dict(os.environ)
    env.pop("XLA_FLAGS", None)
    try:
        procs = [subprocess.Popen([sys.executable, "-c", RUN, d, f"localhost:{port}", str(i)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  env=env) for i in (0, 1)]
        outs = [q.communicate(timeout=300) for q in procs]
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    assert [q.returncode for q in procs] == [0, 0], outs
    last = [out.strip().splitlines()[-1] for out, _ in outs]  # after the backend's own lines
    assert last[0].startswith("refused:") and f"pid {p.pid}" in last[0], outs
    assert last[1].startswith("refused:") and "process 0 of this run" in last[1], outs
    assert os.listdir(d) == [lock.LOCK]
