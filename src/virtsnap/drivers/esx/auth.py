"""Credentials for esx:// and vpx:// connections: a user name and a password, never from argv, never logged.

User: the URI's user part, the openAuth callback (VIR_CRED_AUTHNAME), the auth file, a prompt on a terminal.
Password: the openAuth callback (VIR_CRED_PASSPHRASE, else NOECHOPROMPT), the auth file, $VIRTSNAP_ESX_PASSWORD,
a prompt on a terminal. A callback that declines passes to the next source. Error messages name where a
secret was looked for, never the secret itself.
"""

from __future__ import annotations

import configparser
import getpass
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from ...errors import ErrorCode, ErrorDomain, error
from ...flags import Cred

ERR = ErrorDomain.ESX
PASSWORD_ENV = "VIRTSNAP_ESX_PASSWORD"
AUTH_FILE_ENVS = ("VIRTSNAP_AUTH_CONFIG", "LIBVIRT_AUTH_FILE")


@dataclass(frozen=True, slots=True)
class Credentials:
    user: str
    password: str = field(repr=False)
    source: str = ""  # where the password came from ("callback", "auth file", ...), for messages


def auth_file_path(env: Mapping[str, str] = os.environ) -> tuple[Path, bool]:
    """The auth file to read, and whether the environment named it (then it must exist)."""
    for var in AUTH_FILE_ENVS:
        if env.get(var):
            return Path(env[var]), True
    base = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "libvirt" / "auth.conf", False


def read_auth_file(path: Path, must_exist: bool, services: tuple[str, ...],
                   host: str) -> tuple[str | None, str | None]:
    """libvirt's auth.conf lookup: [auth-SERVICE-HOST] or [auth-SERVICE-default] names [credentials-X].

    Refuses a file that other users could read or that another user owns (VIR_ERR_AUTH_FAILED).
    """
    try:
        st = path.stat()
    except FileNotFoundError:
        if must_exist:
            raise error(ErrorCode.AUTH_FAILED, ERR, f"auth file {path} does not exist") from None
        return None, None
    except OSError as exc:
        raise error(ErrorCode.AUTH_FAILED, ERR, f"cannot read auth file {path}: {exc.strerror}") from exc
    if st.st_uid != os.getuid():
        raise error(ErrorCode.AUTH_FAILED, ERR, f"auth file {path} is owned by another user (uid {st.st_uid})")
    if st.st_mode & 0o077:
        raise error(ErrorCode.AUTH_FAILED, ERR,
                    f"auth file {path} is accessible by other users (mode {st.st_mode & 0o777:04o}); "
                    f"run: chmod 600 {path}")
    parser = configparser.ConfigParser(interpolation=None, strict=False, default_section="\x00")
    try:
        parser.read_string(path.read_text(encoding="utf-8"), source=str(path))
    except configparser.ParsingError as exc:
        # The offending lines may hold a password: report line numbers only.
        lines = ", ".join(str(lineno) for lineno, _ in exc.errors)
        raise error(ErrorCode.AUTH_FAILED, ERR, f"cannot parse auth file {path} (line {lines})") from None
    except (configparser.Error, OSError, UnicodeDecodeError) as exc:
        raise error(ErrorCode.AUTH_FAILED, ERR, f"cannot parse auth file {path} ({type(exc).__name__})") from None
    for service in services:
        for group in (f"auth-{service}-{host}", f"auth-{service}-default"):
            if not parser.has_section(group):
                continue
            name = parser.get(group, "credentials", fallback=None)
            if not name:
                raise error(ErrorCode.AUTH_FAILED, ERR, f"group [{group}] of {path} lacks a 'credentials' key")
            creds = f"credentials-{name}"
            if not parser.has_section(creds):
                raise error(ErrorCode.AUTH_FAILED, ERR, f"{path} names missing credentials group [{creds}]")
            return (parser.get(creds, "username", fallback=None) or None,
                    parser.get(creds, "password", fallback=None) or None)
    return None, None


def ask_callback(auth: Any, choices: tuple[Cred, ...], prompt: str, default: str | None,
                 what: str) -> str | None:
    """Ask libvirt-python's openAuth callback ([credtypes, callback, cbdata]) for one credential.

    None when there is no callback, it offers none of `choices`, or it declines (returns -1 or leaves the
    result empty with no default): the next source is tried then, so a CLI's prompting callback that has no
    terminal does not hide the auth file or the environment. A callback that raises is VIR_ERR_AUTH_FAILED.
    """
    if not auth or len(auth) < 2 or auth[1] is None:
        return None
    offered = {int(t) for t in (auth[0] or ())}
    chosen = next((c for c in choices if int(c) in offered), None)
    if chosen is None:
        return None
    callback: Callable[[list[list[Any]], Any], int] = auth[1]
    cbdata = auth[2] if len(auth) > 2 else None
    cred: list[Any] = [int(chosen), prompt, "", default, None]  # type, prompt, challenge, defresult, result
    try:
        ret = callback([cred], cbdata)
    except Exception as exc:  # a broken callback is an authentication failure, not a crash
        raise error(ErrorCode.AUTH_FAILED, ERR, f"{what} request failed ({type(exc).__name__} in callback)") from exc
    if isinstance(ret, int) and ret < 0:
        return None
    result = cred[4] if cred[4] not in (None, "") else default
    return None if result in (None, "") else str(result)


def _is_tty(stream: TextIO | None) -> bool:
    try:
        return stream is not None and stream.isatty()
    except (ValueError, OSError):
        return False


@dataclass
class CredentialSource:
    """Resolves the user and password for one connection; each source is consulted at most once."""

    host: str
    services: tuple[str, ...]
    default_user: str
    auth: Any = None
    env: Mapping[str, str] = field(default_factory=lambda: os.environ)
    stdin: TextIO | None = field(default_factory=lambda: sys.stdin)
    read_password: Callable[[str], str] = getpass.getpass
    read_line: Callable[[str], str] | None = None
    _file: tuple[str | None, str | None] | None = None
    _file_path: Path | None = None

    def _auth_file(self) -> tuple[str | None, str | None]:
        if self._file is None:
            path, named = auth_file_path(self.env)
            self._file_path = path
            self._file = read_auth_file(path, named, self.services, self.host)
        return self._file

    def _prompt_line(self, prompt: str) -> str:
        if self.read_line is not None:
            return self.read_line(prompt)
        sys.stderr.write(prompt)
        sys.stderr.flush()
        assert self.stdin is not None
        return self.stdin.readline().strip()

    def user(self, uri_user: str | None) -> str:
        if uri_user:
            return uri_user
        answer = ask_callback(self.auth, (Cred.AUTHNAME,), f"Enter username for {self.host} [{self.default_user}]",
                              self.default_user, "Username")
        if answer:
            return answer
        file_user, _ = self._auth_file()
        if file_user:
            return file_user
        if _is_tty(self.stdin):
            line = self._prompt_line(f"Enter username for {self.host} [{self.default_user}]: ")
            return line or self.default_user
        raise error(ErrorCode.AUTH_FAILED, ERR,
                    f"Username request failed: no user name for {self.host}; give it in the URI "
                    f"(esx://{self.default_user}@{self.host}/), in the auth file, or through openAuth")

    def credentials(self, uri_user: str | None) -> Credentials:
        user = self.user(uri_user)
        prompt = f"Enter {user}'s password for {self.host}"
        answer = ask_callback(self.auth, (Cred.PASSPHRASE, Cred.NOECHOPROMPT), prompt, None, "Password")
        if answer is not None:
            return Credentials(user, answer, "callback")
        file_user, file_password = self._auth_file()
        if file_password and (file_user is None or file_user == user):
            return Credentials(user, file_password, f"auth file {self._file_path}")
        env_password = self.env.get(PASSWORD_ENV)
        if env_password:
            return Credentials(user, env_password, f"${PASSWORD_ENV}")
        if _is_tty(self.stdin):
            typed = self.read_password(prompt + ": ")
            if typed:
                return Credentials(user, typed, "prompt")
        raise error(ErrorCode.AUTH_FAILED, ERR,
                    f"Password request failed: no password for {user}@{self.host} from the openAuth callback, "
                    f"the auth file ({self._file_path}), ${PASSWORD_ENV} or a terminal prompt")
