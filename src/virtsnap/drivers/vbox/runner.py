"""Finding and running VBoxManage: argument lists only (never a shell), a fixed locale, timeouts.

Failures come back as `VBoxManageError` subclasses; the driver translates them into libvirt errors.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .parse import Failure, parse_error

__all__ = [
    "ENV_VAR",
    "CommandError",
    "Completed",
    "LaunchError",
    "Runner",
    "VBoxManageError",
    "VBoxTimeoutError",
    "find_vboxmanage",
]

ENV_VAR = "VIRTSNAP_VBOXMANAGE"
_NAMES = ("VBoxManage", "vboxmanage")

# C.UTF-8, not plain C: messages stay untranslated, but IPRT converts everything VBoxManage prints to the
# locale's code set, and in the C locale (ASCII) every non-ASCII character of a name would become '?'.
_LOCALE = "C.UTF-8"


@dataclass(frozen=True, slots=True)
class Completed:
    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str


class VBoxManageError(Exception):
    """VBoxManage could not be run, or it reported a failure."""


class LaunchError(VBoxManageError):
    """The executable is missing or cannot be executed."""


class VBoxTimeoutError(VBoxManageError):
    """VBoxManage did not finish in time and was killed (VirtualBox may still finish the operation)."""

    def __init__(self, args: Sequence[str], timeout: float) -> None:
        super().__init__(f"VBoxManage {' '.join(args[:3])} did not finish within {timeout:g} s")
        self.args_ = tuple(args)
        self.timeout = timeout


class CommandError(VBoxManageError):
    """VBoxManage exited with a non-zero status; `failure` holds its parsed error report."""

    def __init__(self, completed: Completed) -> None:
        self.completed = completed
        self.failure: Failure = parse_error(completed.stderr, completed.stdout)
        super().__init__(self.failure.message)


def find_vboxmanage(environ: Mapping[str, str] | None = None) -> str:
    """The VBoxManage to run: $VIRTSNAP_VBOXMANAGE if set (it must be executable), else the first one on PATH.

    Raises LaunchError when there is none.
    """
    env = os.environ if environ is None else environ
    configured = env.get(ENV_VAR)
    if configured:
        if os.path.isfile(configured) and os.access(configured, os.X_OK):
            return configured
        raise LaunchError(f"{ENV_VAR}={configured} is not an executable file")
    for name in _NAMES:
        found = shutil.which(name, path=env.get("PATH"))
        if found:
            return found
    raise LaunchError(f"VBoxManage was not found on PATH (set {ENV_VAR} to its path)")


class Runner:
    """Runs one VBoxManage executable. Thread-safe: it keeps no state between calls."""

    def __init__(self, executable: str, timeout: float = 120.0) -> None:
        self.executable = executable
        self.timeout = timeout
        env = dict(os.environ)
        env.pop("LANGUAGE", None)  # GNU gettext would prefer it over LC_ALL
        env.update(LC_ALL=_LOCALE, LANG=_LOCALE)
        self._env = env

    def run(self, *args: str, timeout: float | None = None, check: bool = True) -> Completed:
        """Run `VBoxManage ARGS...` and return its output (decoded as UTF-8, CRLF read as LF).

        Raises LaunchError if it cannot start, VBoxTimeoutError if it overruns (the process is killed; an
        operation VirtualBox already started may still complete), CommandError on a non-zero exit
        when `check` is true.
        """
        argv = [self.executable, *args]
        limit = self.timeout if timeout is None else timeout
        try:
            proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, env=self._env,
                                  timeout=limit, check=False)
        except subprocess.TimeoutExpired as exc:
            raise VBoxTimeoutError(args, limit) from exc
        except OSError as exc:
            raise LaunchError(f"cannot run {self.executable}: {exc.strerror or exc}") from exc
        completed = Completed(tuple(args), proc.returncode, _text(proc.stdout), _text(proc.stderr))
        if check and completed.returncode != 0:
            raise CommandError(completed)
        return completed


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace").replace("\r\n", "\n")
