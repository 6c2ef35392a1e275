"""A Ray head node of our own for tests: loopback only, free ports, stopped by its PIDs.

``ray stop`` would kill every Ray process on the machine; this stops only the processes whose
command line names this head's temporary directory or GCS address, and their children.
With ``auth_home``, the head runs with Ray's token authentication (``RAY_AUTH_MODE=token``) and
``auth_home`` as its HOME, whose ``.ray/auth_token`` holds the token (never the user's ~/.ray).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ray_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0", RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",
               PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}")
    env.pop("RAY_ADDRESS", None)
    return env


def scan_processes() -> dict[int, tuple[int, str]]:
    """Parent PID and command line of every process on the machine, from one scan of /proc."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except (OSError, ValueError, IndexError):
                continue
            found[int(entry.name)] = (parent, cmdline)
    return found


def process_tree(roots: set[int], processes: dict[int, tuple[int, str]] | None = None) -> set[int]:
    """``roots`` and all their descendants (in ``processes``, by default a fresh scan)."""
    parents = {pid: parent for pid, (parent, _) in (processes or scan_processes()).items()}
    found, frontier = set(roots), set(roots)
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def listening_addresses(pids: set[int]) -> set[str]:
    """Local addresses of every TCP socket that one of ``pids`` listens on."""
    output = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True).stdout
    wanted = {f"pid={pid}," for pid in pids}
    return {line.split()[3].rsplit(":", 1)[0] for line in output.splitlines()
            if any(marker in line for marker in wanted)}


LOOPBACK = {"127.0.0.1", "[::ffff:127.0.0.1]", "[::1]"}


def token_env(home: Path) -> dict[str, str]:
    """:func:`ray_env` with token authentication on and ``home`` as HOME (token in ``home/.ray``)."""
    return {**ray_env(), "RAY_AUTH_MODE": "token", "HOME": str(home)}


class LocalHead:
    def __init__(self, num_cpus: int = 4, auth_home: Path | None = None) -> None:
        self.temp_dir = tempfile.mkdtemp(prefix="rh", dir="/tmp")  # short: socket paths are length-limited
        self.gcs_port, self.dashboard_port = free_port(), free_port()
        self.num_cpus = num_cpus
        self.env = ray_env() if auth_home is None else token_env(auth_home)

    @property
    def dashboard(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    def start(self) -> "LocalHead":
        ports = {"--port": self.gcs_port, "--dashboard-port": self.dashboard_port,
                 "--ray-client-server-port": free_port(), "--dashboard-agent-listen-port": free_port(),
                 "--dashboard-agent-grpc-port": free_port(), "--metrics-export-port": free_port(),
                 "--runtime-env-agent-port": free_port(), "--node-manager-port": free_port(),
                 "--object-manager-port": free_port()}
        command = [str(BIN / "ray"), "start", "--head", "--node-ip-address=127.0.0.1", "--dashboard-host=127.0.0.1",
                   f"--num-cpus={self.num_cpus}", f"--temp-dir={self.temp_dir}", "--disable-usage-stats",
                   "--include-dashboard=true"] + [f"{flag}={port}" for flag, port in ports.items()]
        subprocess.run(command, env=self.env, check=True, capture_output=True, text=True, timeout=120)
        return self

    def submit(self, working_dir: Path, entrypoint: list[str], timeout: float = 420,
               env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        """``ray job submit`` (waits for the job), retrying while the job agent is not up yet;
        ``env`` is the client's environment (by default the head's)."""
        command = [str(BIN / "ray"), "job", "submit", "--address", self.dashboard, "--working-dir", str(working_dir),
                   "--"] + entrypoint
        deadline = time.monotonic() + 60
        while True:
            result = subprocess.run(command, env=env or self.env, capture_output=True, text=True, timeout=timeout)
            agent_missing = "No available agent" in result.stdout + result.stderr
            if not agent_missing or time.monotonic() > deadline:
                return result
            time.sleep(2)

    def listening_addresses(self) -> set[str]:
        """Local addresses of every TCP socket our head's processes listen on."""
        return listening_addresses(self._pids())

    def _pids(self) -> set[int]:
        markers = (self.temp_dir, f"127.0.0.1:{self.gcs_port}")
        processes = scan_processes()
        roots = {pid for pid, (_, cmdline) in processes.items() if any(marker in cmdline for marker in markers)}
        return process_tree(roots, processes) - {os.getpid()}

    def stop(self) -> None:
        for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 2.0)):
            pids = self._pids()
            for pid in pids:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + wait
            while self._pids() and time.monotonic() < deadline:
                time.sleep(0.2)
        shutil.rmtree(self.temp_dir, ignore_errors=True)
