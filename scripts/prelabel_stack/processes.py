"""Processes on this machine: pid files, liveness, signals, waits, logs and apt."""

from __future__ import annotations

import contextlib
import filecmp
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from prelabel_stack.config import StackError
from prelabel_stack.rendering import console

POLL_INTERVAL_S = 0.25
# How long a process gets between SIGTERM and SIGKILL. SeaweedFS's master lingers
# ~15 s after SIGTERM although its volumes are already closed, so it is not waited out.
STOP_GRACE_S = {"seaweedfs": 8.0, "triton": 20.0, "test-broker": 30.0, "rabbitmq": 30.0}
DEFAULT_STOP_GRACE_S = 15.0


def read_pid(pid_file: Path) -> int | None:
    """The pid in a pid file, or None when the file is missing or garbled."""
    try:
        return int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None


def pid_alive(pid: int, cmdline_token: str | None = None) -> bool:
    """True when pid runs, is not a zombie and (if given) has cmdline_token in its cmdline.

    The token guards against a stale pid file whose number the kernel gave to
    an unrelated process since.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    proc = Path("/proc") / str(pid)
    if not proc.exists():
        # Not Linux (or no /proc): the signal check above is all there is.
        return True
    try:
        stat = (proc / "stat").read_text()
        # Field 3, after the parenthesised command name, is the state.
        if stat.rpartition(")")[2].split()[0] in ("Z", "X"):
            return False
        if cmdline_token is not None:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            return cmdline_token in cmdline
    except (OSError, IndexError):
        return False
    return True


def signal_group(pid: int, sig: signal.Signals) -> None:
    """Send sig to the process group pid leads (start_new_session), else to pid alone."""
    with contextlib.suppress(ProcessLookupError):
        try:
            same_group = os.getpgid(pid) == pid
        except ProcessLookupError:
            return
        if same_group:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)


def wait_until(
    check: Callable[[], bool], timeout: float, interval: float = POLL_INTERVAL_S
) -> bool:
    """Poll check until it is true or the deadline passes; return the last answer."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def log_tail(path: Path, lines: int = 40) -> str:
    """The last lines of a log file (SeaweedFS pads its log with NULs: dropped)."""
    try:
        data = path.read_bytes()[-64_000:]
    except OSError:
        return "(no log)"
    text = data.replace(b"\0", b"").decode(errors="replace")
    return "\n".join(text.splitlines()[-lines:])


def rotate_log(path: Path) -> None:
    """Keep one previous log (``<name>.log.1``) so a restart does not lose the last crash."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        path.replace(path.with_name(path.name + ".1"))


POLICY_RC_D = Path("/usr/sbin/policy-rc.d")


def apt_install(
    package: str, log: Path, *, recommends: bool = True, start_daemons: bool = True
) -> None:
    """Install a Debian package with apt-get (root only), logging to log.

    ``recommends=False``: without the packages it only recommends. ``start_daemons=False``:
    a package that ships a system service (``prometheus`` listens on :9090 once started)
    is installed without its maintainer scripts starting it: a ``policy-rc.d`` that
    refuses every start is in place while apt runs (one already there is kept).
    """
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise StackError(
            f"{package} is not installed and cannot be installed automatically "
            "(needs root and apt-get). Install it and run `up` again."
        )
    console.print(f"[yellow]installing {package} with apt-get (this takes a while)...[/]")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    log.parent.mkdir(parents=True, exist_ok=True)
    install = ["apt-get", "install", "-y", *([] if recommends else ["--no-install-recommends"])]
    policy_added = False
    if not start_daemons and not POLICY_RC_D.exists():
        POLICY_RC_D.write_text(
            "#!/bin/sh\n# written by prelabel_stack for one apt-get run\nexit 101\n"
        )
        POLICY_RC_D.chmod(0o755)
        policy_added = True
    try:
        with log.open("ab") as out:
            for cmd in (["apt-get", "update"], [*install, package]):
                done = subprocess.run(
                    cmd, stdout=out, stderr=subprocess.STDOUT, env=env, timeout=1800, check=False
                )
                if done.returncode != 0:
                    raise StackError(
                        f"`{' '.join(cmd)}` failed (exit {done.returncode}); see {log}\n"
                        + log_tail(log, 20)
                    )
    finally:
        if policy_added:
            POLICY_RC_D.unlink(missing_ok=True)


def install_file(src: Path, dst: Path) -> None:
    """Copy src to dst when different, atomically (dst may be an executable in use)."""
    if dst.exists() and filecmp.cmp(src, dst, shallow=False):
        return
    tmp = dst.with_name(dst.name + ".tmp")
    shutil.copy2(src, tmp)
    tmp.replace(dst)
