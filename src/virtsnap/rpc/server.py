"""`virtsnap rpc --stdio [--readonly] URI`: one connection served over stdin/stdout as JSON lines, through
the public API only (so every flag, read-only and journal rule of a local call holds for a remote one)."""

from __future__ import annotations

import os
import queue
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from typing import IO, Any

import virtsnap
from virtsnap import progress
from virtsnap.api import virConnect, virDomain, virDomainSnapshot

from . import protocol

# libvirt's numbers, as the public module exports them
_INTERNAL_ERROR = int(virtsnap.ErrorCode.INTERNAL_ERROR)
_OPERATION_ABORTED = int(virtsnap.ErrorCode.OPERATION_ABORTED)
_FROM_RPC = int(virtsnap.ErrorDomain.RPC)
USAGE = "usage: virtsnap rpc --stdio [--readonly] URI"


def _record(dom: virDomain) -> list[Any]:
    return [dom.name(), dom.UUIDString(), dom.ID(), bool(dom.isPersistent())]


class Session:
    """The calls of one connection: each takes the connection and plain JSON parameters."""

    def __init__(self, conn: virConnect) -> None:
        self.conn = conn

    def dom(self, uuid: str) -> virDomain:
        return self.conn.lookupByUUIDString(uuid)

    def snap(self, uuid: str, name: str) -> virDomainSnapshot:
        return self.dom(uuid).snapshotLookupByName(name)

    def table(self) -> dict[str, Callable[..., Any]]:
        c = self.conn
        return {
            "hostname": c.getHostname,
            "hypervisor_version": c.getVersion,
            "capabilities_xml": c.getCapabilities,
            "node_info": c.getInfo,
            "security_model": c.getSecurityModel,
            "list_domains": lambda: [_record(d) for d in c.listAllDomains(0)],
            "lookup_domain": self.lookup_domain,
            "domain_state": lambda uuid: self.dom(uuid).state(),
            "domain_info": lambda uuid: self.dom(uuid).info(),
            "domain_xml": lambda uuid, flags: self.dom(uuid).XMLDesc(flags),
            "domain_persistent": lambda uuid: bool(self.dom(uuid).isPersistent()),
            "domain_os_type": lambda uuid: self.dom(uuid).OSType(),
            "domain_autostart": lambda uuid: bool(self.dom(uuid).autostart()),
            "domain_managed_save": lambda uuid: bool(self.dom(uuid).hasManagedSaveImage()),
            "domain_security_label": lambda uuid: self.dom(uuid).securityLabel(),
            "define_xml": lambda xml, flags: _record(c.defineXMLFlags(xml, flags)),
            "undefine": lambda uuid, flags: self.dom(uuid).undefineFlags(flags),
            "start": lambda uuid, flags: self.dom(uuid).createWithFlags(flags),
            "shutdown": lambda uuid, flags: self.dom(uuid).shutdownFlags(flags),
            "destroy": lambda uuid, flags: self.dom(uuid).destroyFlags(flags),
            "suspend": lambda uuid: self.dom(uuid).suspend(),
            "resume": lambda uuid: self.dom(uuid).resume(),
            "snapshot_forest": lambda uuid: self.dom(uuid).snapshotForest(),
            "snapshot_create": lambda uuid, xml, flags: self.dom(uuid).snapshotCreateXML(xml, flags).getName(),
            "snapshot_xml": lambda uuid, name, flags: self.snap(uuid, name).getXMLDesc(flags),
            "snapshot_revert": lambda uuid, name, flags: self.dom(uuid).revertToSnapshot(self.snap(uuid, name), flags),
            "snapshot_delete": lambda uuid, name, flags: self.snap(uuid, name).delete(flags),
            "snapshot_size": lambda uuid, name: self.snap(uuid, name).getSize(),
            "snapshot_check": lambda uuid, flags: [d.as_dict() for d in self.dom(uuid).snapshotCheck(flags)],
            "snapshot_set_protected": lambda uuid, name, on: self.snap(uuid, name).setProtected(bool(on)),
            "snapshot_rename": self.rename,
        }

    def lookup_domain(self, name: str | None, uuid: str | None, id: int | None) -> list[Any]:
        if name is not None:
            return _record(self.conn.lookupByName(name))
        if uuid is not None:
            return _record(self.conn.lookupByUUIDString(uuid))
        return _record(self.conn.lookupByID(int(id or 0)))

    def rename(self, uuid: str, name: str, new_name: str) -> str:
        snap = self.snap(uuid, name)
        snap.rename(new_name)
        return snap.getName()


class Server:
    """Reads requests on a thread (so that a cancel reaches a running call), runs them on the main thread."""

    def __init__(self, out: IO[bytes]) -> None:
        self.out = out
        self.requests: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.lock = threading.Lock()
        self.running: Any = None  # the id of the call in progress
        self.cancelled: set[Any] = set()  # cancels that arrived before their call started

    def send(self, message: dict[str, Any]) -> None:
        self.out.write(protocol.encode(message))
        self.out.flush()

    def progress_to(self, ident: Any) -> progress.ProgressFn:
        """A progress callback that forwards each report of call `ident` to the client."""
        def forward(what: str, done: int, total: int) -> None:
            try:
                self.send({"id": ident, "progress": [what, done, total]})
            except OSError:
                pass  # the client is gone: the operation still runs to its end (or its journal's)
        return forward

    def reader(self, stream: IO[bytes]) -> None:
        try:
            while True:
                line = stream.readline(protocol.MAX_LINE)
                if not line or not line.endswith(b"\n"):
                    break  # end of input or an overlong line: the client is gone or broken
                try:
                    message = protocol.decode(line)
                except ValueError:
                    break
                if "cancel" in message:
                    with self.lock:
                        if self.running is not None and message["cancel"] == self.running:
                            os.kill(os.getpid(), signal.SIGINT)  # the call stops as a local Ctrl-C stops it
                        else:
                            self.cancelled.add(message["cancel"])
                    continue
                self.requests.put(message)
        finally:
            self.requests.put(None)

    def serve(self, session: Session) -> None:
        table = session.table()
        while True:
            try:
                request = self.requests.get()
            except KeyboardInterrupt:  # a cancel that arrived after its call had finished
                continue
            if request is None:
                return
            self.answer(table, request)

    def answer(self, table: dict[str, Callable[..., Any]], request: dict[str, Any]) -> None:
        ident = request.get("id")
        response: dict[str, Any]
        try:
            try:
                with self.lock:
                    if ident in self.cancelled:
                        self.cancelled.discard(ident)
                        raise KeyboardInterrupt  # cancelled before it started: nothing ran
                    self.running = ident
                fn = table.get(str(request.get("method")))
                params = request.get("params", [])
                if fn is None or not isinstance(params, list):
                    raise virtsnap.libvirtError(f"internal error: unknown rpc call {request.get('method')!r}",
                                                _INTERNAL_ERROR, _FROM_RPC)
                if request.get("progress") is True:
                    with progress.reporting(self.progress_to(ident)):
                        response = {"id": ident, "result": fn(*params)}
                else:
                    response = {"id": ident, "result": fn(*params)}
            finally:
                with self.lock:
                    self.running = None
        except virtsnap.libvirtError as exc:
            response = {"id": ident, "error": _error(exc)}
        except KeyboardInterrupt:
            response = {"id": ident, "interrupted": True,
                        "error": {"code": _OPERATION_ABORTED, "domain": 0,
                                  "message": "operation aborted: interrupted"}}
        except Exception as exc:  # a bug must still reach the client as a libvirt error, not kill the server
            response = {"id": ident, "error": {"code": _INTERNAL_ERROR, "domain": 0,
                                               "message": f"internal error: {type(exc).__name__}: {exc}"}}
        try:
            self.send(response)
        except KeyboardInterrupt:  # the call's own cancel landing late: the answer still goes out
            self.send(response)


def _error(exc: virtsnap.libvirtError) -> dict[str, Any]:
    return {"code": int(exc.get_error_code() or 1), "domain": int(exc.get_error_domain() or 0),
            "message": str(exc.get_error_message() or exc)}


def main(args: Sequence[str], readonly: bool = False) -> int:
    rest = [a for a in args if a not in ("--stdio", "--readonly")]
    readonly = readonly or "--readonly" in args
    if "--stdio" not in args or len(rest) != 1 or rest[0].startswith("-"):
        sys.stderr.write(f"error: {USAGE}\n")
        return 1
    # stdout carries only protocol lines: anything else a library prints goes to stderr instead.
    out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    server = Server(out)
    server.send({protocol.HELLO: protocol.PROTOCOL, "version": virtsnap.__version__})
    try:
        conn = virtsnap.openReadOnly(rest[0]) if readonly else virtsnap.open(rest[0])
        server.send({"id": 0, "result": conn.driverCapabilities()})
    except virtsnap.libvirtError as exc:
        server.send({"id": 0, "error": _error(exc)})
        return 1
    threading.Thread(target=server.reader, args=(sys.stdin.buffer,), daemon=True).start()
    try:
        server.serve(Session(conn))
    except BrokenPipeError:
        pass  # the client went away after the last call finished: nothing is left to tell it
    finally:
        conn.close()
    return 0
