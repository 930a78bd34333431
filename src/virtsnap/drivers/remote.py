"""The `+ssh` driver: qemu+ssh://[user@]host[:port]/system (and test+ssh, vbox+ssh) runs `virtsnap rpc --stdio`
on the host through the system's ssh client and forwards every Driver call to it (rpc/protocol.py)."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import tempfile
import weakref
from collections.abc import Callable
from typing import IO, Any, TypeVar

from .. import progress
from ..conf.tree import Moment, SnapshotTree
from ..enums import member
from ..errors import ErrorCode, ErrorDomain, error, libvirtError, raw_error
from ..flags import DomainState
from ..rpc import protocol
from ..uri import URI, redact
from .base import Capabilities, DomainInfo, DomainRecord, Drift, Op, SnapshotSize

T = TypeVar("T")

# The schemes whose remote end is a virtsnap (libvirt+ssh goes through libvirt's own remote driver instead)
SCHEMES = ("qemu", "test", "vbox")
# libvirt's ssh URI parameters that virtsnap applies; any other parameter is refused by name
PARAMS = ("keyfile", "no_verify", "no_tty", "command", "known_hosts")
# ssh expands %-tokens and splits UserKnownHostsFile on whitespace: such paths would not mean what they say
_PATH_UNSAFE = set("%\"' \t\\")


def _path(uri: URI, name: str) -> str:
    value = uri.params[name]
    if not value or any(c in _PATH_UNSAFE or ord(c) < 32 for c in value):
        raise error(ErrorCode.INVALID_ARG, ErrorDomain.RPC,
                    f"URI parameter {name} must be a plain path (no spaces, quotes, % or control characters)")
    return value


def ssh_argv(uri: URI, read_only: bool) -> list[str]:
    """The ssh command line for `uri`: BatchMode (never a password prompt), options only from the URI's
    known parameters, the host after `--`, and the remote command with every part shell-quoted."""
    unknown = sorted(set(uri.params) - set(PARAMS))
    if unknown:
        raise error(ErrorCode.INVALID_ARG, ErrorDomain.RPC,
                    f"unsupported URI parameters for {uri.scheme}+ssh: {', '.join(unknown)}")
    if not uri.host or uri.host.startswith("-"):
        raise error(ErrorCode.INVALID_ARG, ErrorDomain.RPC, f"no usable host in {redact(uri.text)}")
    argv = ["ssh", "-T", "-o", "BatchMode=yes", "-e", "none"]
    if uri.port is not None:
        argv += ["-p", str(uri.port)]
    if uri.user:
        argv += ["-l", uri.user]
    if "keyfile" in uri.params:
        argv += ["-o", "IdentitiesOnly=yes", "-i", _path(uri, "keyfile")]
    if "known_hosts" in uri.params:
        argv += ["-o", "UserKnownHostsFile=" + _path(uri, "known_hosts")]
    if uri.flag("no_verify"):
        argv += ["-o", "StrictHostKeyChecking=no"]
    command = uri.params.get("command", "virtsnap")
    if not command or any(ord(c) < 32 for c in command):
        raise error(ErrorCode.INVALID_ARG, ErrorDomain.RPC, "URI parameter command must be a program path")
    remote = [command, "rpc", "--stdio"] + (["--readonly"] if read_only else []) + [remote_uri(uri)]
    # ssh hands the command to the remote user's shell as one string: quote every word
    return [*argv, "--", uri.host, " ".join(shlex.quote(word) for word in remote)]


def remote_uri(uri: URI) -> str:
    """The URI the remote virtsnap opens: the driver and path, without transport, host or ssh parameters."""
    return f"{uri.scheme}://{uri.path}"


def open_driver(uri: URI, read_only: bool, auth: Any = None) -> RemoteDriver:
    if uri.scheme not in SCHEMES:
        raise error(ErrorCode.NO_CONNECT, ErrorDomain.NONE, redact(uri.text))
    return RemoteDriver(uri, read_only)


class RemoteDriver:
    """A Driver whose every call runs in `virtsnap rpc` on another host. Snapshot queries fetch the
    domain's forest once per query and run locally on it, so listings cost one round trip."""

    def __init__(self, uri: URI, read_only: bool) -> None:
        self.uri = uri
        self._host = uri.host or ""
        self._argv = ssh_argv(uri, read_only)
        self._next = 0
        self._closed = False
        self._stderr: IO[bytes] = tempfile.TemporaryFile()
        try:
            # Own session: a terminal's Ctrl-C reaches virtsnap (which cancels remotely), not ssh (which would
            # drop the connection); no controlling terminal, so ssh can never ask for a password.
            self._proc = subprocess.Popen(self._argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                          stderr=self._stderr, start_new_session=True)
        except OSError as exc:
            raise error(ErrorCode.SYSTEM_ERROR, ErrorDomain.RPC, f"Cannot run ssh: {exc.strerror}") from exc
        # Handles that outlive an explicit close keep the driver; when the last goes, the pipe closes with it
        self._finalizer = weakref.finalize(self, _hang_up, self._proc, self._stderr)
        try:
            self._handshake()
            caps = self._read(0)
        except BaseException:
            self.close()
            raise
        self.capabilities = Capabilities(
            str(caps["func_prefix"]), ErrorDomain(int(caps["error_domain"])),
            {op: int(mask) for name, mask in caps["flags"].items() if (op := member(Op, name, None)) is not None})

    # -- the pipe -----------------------------------------------------------------------------------
    def _ssh_stderr(self) -> str:
        self._stderr.seek(0)
        text = self._stderr.read().decode(errors="replace").strip()
        return " ".join(text.splitlines()[-3:])

    def _eof(self) -> libvirtError:
        """libvirt's remote driver on a dropped connection: VIR_ERR_SYSTEM_ERROR from the RPC layer."""
        detail = self._ssh_stderr()
        return raw_error(ErrorCode.SYSTEM_ERROR, ErrorDomain.RPC,
                         "End of file while reading data: " + (detail + ": " if detail else "") + "Input/output error")

    def _readline(self) -> dict[str, Any] | None:
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline(protocol.MAX_LINE)
        if not line:
            return None
        try:
            return protocol.decode(line)
        except ValueError:
            return {}

    def _handshake(self) -> None:
        hello = self._readline()
        if hello is not None and hello.get(protocol.HELLO) == protocol.PROTOCOL:
            return
        status = self._proc.wait()
        detail = self._ssh_stderr()
        if hello is None and status == 255:  # ssh's own failure: unreachable, refused, authentication
            raise raw_error(ErrorCode.SYSTEM_ERROR, ErrorDomain.RPC,
                            f"Cannot connect to {self._host}: {detail or 'ssh failed'}")
        command = self.uri.params.get("command", "virtsnap")
        if hello is None and status == 127:
            raise raw_error(ErrorCode.NO_CONNECT, ErrorDomain.RPC,
                            f"virtsnap not found on {self._host} (looked for {command!r}; "
                            "give its path with ?command=/path/to/virtsnap)")
        remote = (hello or {}).get("version") or self._remote_version()
        raise raw_error(ErrorCode.NO_CONNECT, ErrorDomain.RPC,
                        f"virtsnap {remote} on {self._host} does not speak rpc protocol {protocol.PROTOCOL}; "
                        f"install virtsnap {_local_version()} there")

    def _remote_version(self) -> str:
        """What `virtsnap --version` says on the host (for the message about an older virtsnap)."""
        argv = [*self._argv[:-1], shlex.quote(self.uri.params.get("command", "virtsnap")) + " --version"]
        try:
            done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=60,
                                  start_new_session=True)
        except (OSError, subprocess.TimeoutExpired):
            return "(version unknown)"
        words = done.stdout.decode(errors="replace").split()
        return words[0] if done.returncode == 0 and words else "(version unknown)"

    def _read(self, ident: int) -> Any:
        message = self._readline()
        while message is not None and (message.get("id") != ident or "progress" in message):
            if message.get("id") == ident:  # the call's progress, shown as a local call shows it
                what, done, total = message["progress"]
                progress.report(str(what), int(done), int(total))
            message = self._readline()  # else an answer to a call abandoned by a second Ctrl-C
        if message is None:
            raise self._eof()
        if "error" in message:
            err = message["error"]
            exc = raw_error(member(ErrorCode, int(err["code"]), ErrorCode.INTERNAL_ERROR),
                            member(ErrorDomain, int(err["domain"]), ErrorDomain.NONE), str(err["message"]))
            raise exc
        return message.get("result")

    def _send(self, message: dict[str, Any]) -> None:
        assert self._proc.stdin is not None
        try:
            self._proc.stdin.write(protocol.encode(message))
            self._proc.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            raise self._eof() from exc

    def _call(self, method: str, *params: Any) -> Any:
        if self._closed:
            raise error(ErrorCode.INTERNAL_ERROR, ErrorDomain.RPC, "client socket is closed")
        self._next += 1
        ident = self._next
        request: dict[str, Any] = {"id": ident, "method": method, "params": list(params)}
        if progress.listening():
            request["progress"] = True  # servers before progress ignore it; they are never sent it otherwise
        self._send(request)
        try:
            return self._read(ident)
        except KeyboardInterrupt:
            # Ctrl-C: the remote call is interrupted as a local one would be (its journal rolls it forward or
            # back) and its answer is this call's outcome: the driver's "operation aborted" error, as locally.
            # A call that had finished anyway still stops here. A second Ctrl-C stops waiting.
            self._send({"cancel": ident})
            self._read(ident)
            raise

    def close(self) -> None:
        self._closed = True
        self._finalizer()

    # -- the Driver protocol ------------------------------------------------------------------------
    def hostname(self) -> str:
        return str(self._call("hostname"))

    def hypervisor_version(self) -> int:
        return int(self._call("hypervisor_version"))

    def capabilities_xml(self) -> str:
        return str(self._call("capabilities_xml"))

    def node_info(self) -> list[Any]:
        return list(self._call("node_info"))

    def security_model(self) -> tuple[str, str]:
        model, doi = self._call("security_model")
        return str(model), str(doi)

    def list_domains(self) -> list[DomainRecord]:
        return [DomainRecord(*r) for r in self._call("list_domains")]

    def lookup_domain(self, *, name: str | None = None, uuid: str | None = None,
                      id: int | None = None) -> DomainRecord:
        return DomainRecord(*self._call("lookup_domain", name, uuid, id))

    def domain_state(self, uuid: str) -> tuple[DomainState, int]:
        state, reason = self._call("domain_state", uuid)
        return DomainState(int(state)), int(reason)

    def domain_info(self, uuid: str) -> DomainInfo:
        state, max_mem, mem, vcpus, cpu_time = self._call("domain_info", uuid)
        return DomainInfo(DomainState(int(state)), max_mem, mem, vcpus, cpu_time)

    def domain_xml(self, uuid: str, flags: int) -> str:
        return str(self._call("domain_xml", uuid, flags))

    def domain_persistent(self, uuid: str) -> bool:
        return bool(self._call("domain_persistent", uuid))

    def domain_os_type(self, uuid: str) -> str:
        return str(self._call("domain_os_type", uuid))

    def domain_autostart(self, uuid: str) -> bool:
        return bool(self._call("domain_autostart", uuid))

    def domain_managed_save(self, uuid: str) -> bool:
        return bool(self._call("domain_managed_save", uuid))

    def domain_security_label(self, uuid: str) -> tuple[str, int]:
        label, enforcing = self._call("domain_security_label", uuid)
        return str(label), int(enforcing)

    def define_xml(self, xml: str, flags: int) -> DomainRecord:
        return DomainRecord(*self._call("define_xml", xml, flags))

    def undefine(self, uuid: str, flags: int) -> None:
        self._call("undefine", uuid, flags)

    def start(self, uuid: str, flags: int) -> None:
        self._call("start", uuid, flags)

    def shutdown(self, uuid: str, flags: int) -> None:
        self._call("shutdown", uuid, flags)

    def destroy(self, uuid: str, flags: int) -> None:
        self._call("destroy", uuid, flags)

    def suspend(self, uuid: str) -> None:
        self._call("suspend", uuid)

    def resume(self, uuid: str) -> None:
        self._call("resume", uuid)

    def _forest(self, uuid: str) -> tuple[SnapshotTree, list[str]]:
        data = self._call("snapshot_forest", uuid)
        tree = SnapshotTree(metadata=bool(data["metadata"]))

        def no_definition(moment: Moment) -> None:
            moment.defn = None  # definitions stay remote: snapshot_xml asks for them

        tree.load_rows([tuple(r) for r in data["rows"]], data["current"], no_definition)
        return tree, list(data["protected"])

    def snapshot_query(self, uuid: str, fn: Callable[[SnapshotTree], T]) -> T:
        return fn(self._forest(uuid)[0])

    def snapshot_protected(self, uuid: str) -> set[str]:
        return set(self._forest(uuid)[1])

    def snapshot_create(self, uuid: str, xml: str, flags: int) -> str:
        return str(self._call("snapshot_create", uuid, xml, flags))

    def snapshot_xml(self, uuid: str, name: str, flags: int) -> str:
        return str(self._call("snapshot_xml", uuid, name, flags))

    def snapshot_revert(self, uuid: str, name: str, flags: int) -> None:
        self._call("snapshot_revert", uuid, name, flags)

    def snapshot_delete(self, uuid: str, name: str, flags: int) -> None:
        self._call("snapshot_delete", uuid, name, flags)

    def snapshot_size(self, uuid: str, name: str) -> SnapshotSize:
        return SnapshotSize(**self._call("snapshot_size", uuid, name))

    def snapshot_check(self, uuid: str, flags: int) -> list[Drift]:
        return [Drift(**d) for d in self._call("snapshot_check", uuid, flags)]

    def snapshot_set_protected(self, uuid: str, name: str, on: bool) -> None:
        self._call("snapshot_set_protected", uuid, name, on)

    def snapshot_rename(self, uuid: str, name: str, new_name: str) -> str:
        return str(self._call("snapshot_rename", uuid, name, new_name))


def _hang_up(proc: subprocess.Popen[bytes], stderr: IO[bytes]) -> None:
    """End a connection: close ssh's input (the server ends after its current call), then reap ssh."""
    for stream in (proc.stdin, proc.stdout):
        if stream is not None:
            try:
                stream.close()
            except OSError:
                pass
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)  # ssh's own session (start_new_session): only what we started
        proc.wait()
    stderr.close()


def _local_version() -> str:
    from importlib import metadata

    return metadata.version("virtsnap")
