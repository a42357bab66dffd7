"""The chaos run's processes: moto server in a process of its own (it was the bottleneck, so it gets
a core and its CPU can be measured), and the workers, each a separate OS process polling the work
queue, SIGKILLed and restarted by a :class:`Workers` supervisor.

Linux only (``/proc``): CPU time per process, and which process owns a TCP connection (so a fault
proxy can kill exactly the worker that sent a request)."""
from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Optional

from infra.local.chaos.proxy import FaultProxy, ProxyRequest

ROOT = Path(__file__).resolve().parents[3]
_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> Optional[float]:
    """User + system CPU seconds of a live process (None when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICKS
    except (OSError, IndexError, ValueError):
        return None


def _socket_inodes(local_port: int, remote_port: int) -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    cols = line.split()
                    if int(cols[1].rsplit(":", 1)[1], 16) == local_port and \
                            int(cols[2].rsplit(":", 1)[1], 16) == remote_port:
                        inodes.add(cols[9])
        except OSError:
            continue
    return inodes


def pid_of_connection(client_port: int, server_port: int, pids) -> Optional[int]:
    """Which of `pids` holds the client end (local `client_port`, remote `server_port`) of a TCP
    connection on this machine."""
    wanted = {f"socket:[{inode}]" for inode in _socket_inodes(client_port, server_port)}
    if not wanted:
        return None
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") in wanted:
                    return pid
            except OSError:
                continue
    return None


class MotoProcess:
    """``python -m infra.local.chaos.moto_process``: moto's threaded server in its own process."""

    def __init__(self, log_path: Path, patched: bool = True):
        self._log = open(log_path, "ab")
        env = {**os.environ, "CHAOS_MOTO_PATCH": "1" if patched else "0"}
        self.proc = subprocess.Popen([sys.executable, "-m", "infra.local.chaos.moto_process"], cwd=ROOT, env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log)
        line = self.proc.stdout.readline().decode().strip()
        if not line.startswith("http"):
            self.stop()
            raise RuntimeError(f"moto server did not start (see {log_path})")
        self.endpoint = line
        self.started = time.monotonic()
        self.cpu_at_start = cpu_seconds(self.proc.pid) or 0.0

    def cpu(self) -> float:
        return (cpu_seconds(self.proc.pid) or 0.0) - self.cpu_at_start

    def stop(self) -> None:
        try:
            self.proc.stdin.close()
            self.proc.wait(5)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait(5)
        self._log.close()


@dataclass
class _Worker:
    slot: int
    proc: subprocess.Popen
    started: float
    busy: bool = False
    ready: bool = False
    cpu: float = 0.0


@dataclass
class Workers:
    """`count` worker processes (``python -m infra.local.chaos.worker``), each reporting its batches
    on a status pipe: "R" ready, "B <n>" batch of n received, "E <ok 0|1> <n>" batch finished."""

    count: int
    env: dict
    log_dir: Path
    seed: int = 0
    batches: int = 0
    records: int = 0
    failed_batches: int = 0
    kills: list = field(default_factory=list)     # (time, slot, pid, busy, why)
    restarts: int = 0
    command: tuple = (sys.executable, "-m", "infra.local.chaos.worker")

    def __post_init__(self):
        self._rng = random.Random(self.seed)
        self._lock = threading.Lock()
        self._slots: dict[int, _Worker] = {}
        self._spared: set[int] = set()
        self._cpu_dead = 0.0
        self._stopping = False

    def start(self) -> "Workers":
        for slot in range(self.count):
            self._spawn(slot)
        return self

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if all(w.ready for w in self._slots.values()):
                    return
            time.sleep(0.05)
        raise RuntimeError(f"workers did not start within {timeout}s (see {self.log_dir})")

    def _spawn(self, slot: int) -> None:
        read, write = os.pipe()
        log = open(self.log_dir / f"worker-{slot}.log", "ab")
        proc = subprocess.Popen(list(self.command), cwd=ROOT,
                                env={**self.env, "CHAOS_STATUS_FD": str(write)}, stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT, pass_fds=(write,))
        os.close(write)
        log.close()
        worker = _Worker(slot, proc, time.monotonic())
        with self._lock:
            self._slots[slot] = worker
        threading.Thread(target=self._read_status, args=(worker, read), daemon=True,
                         name=f"worker-status-{slot}").start()

    def _read_status(self, worker: _Worker, fd: int) -> None:
        with os.fdopen(fd, "r") as status:
            for line in status:
                kind, *rest = line.split()
                with self._lock:
                    if kind == "R":
                        worker.ready = True
                    elif kind == "B":
                        worker.busy = True
                    elif kind == "E":
                        worker.busy = False
                        self.batches += 1
                        self.records += int(rest[1])
                        self.failed_batches += rest[0] == "0"
                worker.cpu = cpu_seconds(worker.proc.pid) or worker.cpu

    @property
    def pids(self) -> list[int]:
        with self._lock:
            return [w.proc.pid for w in self._slots.values()]

    def busy_count(self) -> int:
        with self._lock:
            return sum(w.busy for w in self._slots.values())

    @contextlib.contextmanager
    def spared(self, pid: int) -> Iterator[None]:
        """No random kill takes worker `pid` inside (a scripted kill of it is pending)."""
        with self._lock:
            self._spared.add(pid)
        try:
            yield
        finally:
            with self._lock:
                self._spared.discard(pid)

    def kill(self, slot: Optional[int] = None, pid: Optional[int] = None, why: str = "random",
             restart_after: float = 0.3) -> Optional[dict]:
        """SIGKILL one worker (by slot or pid; by default a busy one if any, chosen by the seeded RNG
        among those not spared), then start a fresh one in its slot."""
        with self._lock:
            if self._stopping:
                return None
            workers = list(self._slots.values())
            if pid is not None:
                target = next((w for w in workers if w.proc.pid == pid), None)
            elif slot is not None:
                target = self._slots.get(slot)
            else:
                # (none: every slot is between a kill and its restart, or spared)
                workers = [w for w in workers if w.proc.pid not in self._spared]
                busy = [w for w in workers if w.busy and w.ready]
                target = self._rng.choice(busy or workers) if workers else None
            if target is None:
                return None
            target.cpu = cpu_seconds(target.proc.pid) or target.cpu
            try:
                os.kill(target.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                return None
            record = {"t": time.time(), "slot": target.slot, "pid": target.proc.pid, "busy": target.busy,
                      "why": why}
            self.kills.append(record)
            self._cpu_dead += target.cpu
            del self._slots[target.slot]
        target.proc.wait()
        threading.Timer(restart_after, self._restart, args=(target.slot,)).start()
        return record

    def _restart(self, slot: int) -> None:
        with self._lock:
            if self._stopping or slot in self._slots:
                return
            self.restarts += 1
        self._spawn(slot)

    def cpu(self) -> float:
        with self._lock:
            live = list(self._slots.values())
            dead = self._cpu_dead
        return dead + sum((cpu_seconds(w.proc.pid) or w.cpu) for w in live)

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            workers = list(self._slots.values())
            self._cpu_dead += sum((cpu_seconds(w.proc.pid) or w.cpu) for w in workers)
            self._slots.clear()
        for w in workers:
            w.proc.send_signal(signal.SIGTERM)
        for w in workers:
            try:
                w.proc.wait(5)
            except subprocess.TimeoutExpired:
                w.proc.kill()
                w.proc.wait(5)


def kill_sender(workers: Workers, proxy: FaultProxy, why: str, log: list,
                after: bool = False) -> Callable[[ProxyRequest], contextlib.AbstractContextManager]:
    """A fault proxy rule's hook: SIGKILL the worker that sent the request, before it is forwarded or
    (`after`) once the simulator answered. Its pid is looked up as the request is read: its connection
    is surely open then, while a worker that gave up waiting (a loaded machine) has closed it by the
    time the answer comes. No random kill takes it meanwhile. `log` gets one entry per request: the
    pid, whether it was killed and, if not, why."""

    def kill(pid: Optional[int]) -> None:
        record = workers.kill(pid=pid, why=why) if pid else None
        entry = {"probe": why, "pid": pid, "killed": record is not None}
        if record is None:
            entry["why_not"] = ("no worker held the request's connection as it was read" if pid is None
                                else "the worker was gone when its kill came (the run stopping?)")
        log.append(entry)

    @contextlib.contextmanager
    def hook(req: ProxyRequest) -> Iterator[None]:
        pid = pid_of_connection(req.client_port, proxy.port, workers.pids)
        with workers.spared(pid) if pid else contextlib.nullcontext():
            if not after:
                kill(pid)
            yield
            if after:
                kill(pid)
    return hook
