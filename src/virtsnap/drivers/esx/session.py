"""One logged-in vSphere session: URI options, TLS, login, the host to work on, property reads, tasks.

Every fault pyvmomi raises is translated here into a libvirtError (`raise ... from exc`); nothing here logs.
"""

from __future__ import annotations

import http.client
import os
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ...conf.xmlutil import lxml_etree, safe_parser
from ...errors import ErrorCode, ErrorDomain, error, libvirtError, raw_error
from ...uri import URI
from .auth import CredentialSource
from .tree import parse_snapshot_info

ERR = ErrorDomain.ESX
CACERT_ENV = "VIRTSNAP_ESX_CACERT"
URI_PARAMS = ("no_verify", "cacert", "transport")
DEFAULT_TASK_TIMEOUT = 3600.0  # seconds; a memory snapshot of a large VM takes minutes
_MAX_WAIT_SECONDS = 60  # one WaitForUpdatesEx call; the loop re-checks the deadline in between
# What the fast property read uses of pyvmomi's SOAP stub (checked once; without them it is not used).
_STUB_ATTRS = ("SerializeRequest", "GetConnection", "ReturnConnection", "DropConnections", "cookie", "versionId",
               "path", "requestModifierList")

ProgressCallback = Callable[[str, int], None]  # (what is being done, percent 0..100)


def load_pyvmomi() -> tuple[Any, Any]:
    """(vim, vmodl), imported on first use; a missing pyvmomi is VIR_ERR_NO_CONNECT with an install hint."""
    try:
        from pyVmomi import vim, vmodl
    except ModuleNotFoundError as exc:
        raise error(ErrorCode.NO_CONNECT, ErrorDomain.NONE,
                    "esx:// and vpx:// (missing Python package 'pyVmomi'; install it with: "
                    "pip install 'virtsnap[esx]')") from exc
    return vim, vmodl


@dataclass(frozen=True, slots=True)
class Endpoint:
    """What an esx:// or vpx:// URI asks for."""

    scheme: str  # esx or vpx
    host: str
    port: int
    user: str | None
    path: tuple[str, ...]  # vpx: datacenter[/folders]/compute resource[/host]
    verify: bool
    cafile: str | None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def endpoint_from_uri(uri: URI, env: dict[str, str] | None = None) -> Endpoint:
    """Validate an esx:// or vpx:// URI. Never echoes the URI text (it could carry a password)."""
    env = dict(os.environ) if env is None else env
    if urlsplit(uri.text).password is not None:
        raise raw_error(ErrorCode.INVALID_ARG, ERR,
                        "a password in the URI is refused (it would show in process lists and logs); "
                        "use openAuth, the auth file or $VIRTSNAP_ESX_PASSWORD")
    if not uri.host:
        raise raw_error(ErrorCode.INVALID_ARG, ERR, f"{uri.scheme}:// URIs need a host name")
    for name in uri.params:
        if name not in URI_PARAMS:
            raise raw_error(ErrorCode.INVALID_ARG, ERR, f"Unknown URI query parameter '{name}'")
    transport = uri.params.get("transport", "https")
    if transport != "https":
        raise raw_error(ErrorCode.INVALID_ARG, ERR,
                        f"Query parameter 'transport' has unsupported value '{transport}' (expecting 'https')")
    no_verify = uri.params.get("no_verify", "0")
    if no_verify not in ("0", "1"):
        raise raw_error(ErrorCode.INVALID_ARG, ERR,
                        f"Query parameter 'no_verify' has unexpected value '{no_verify}' (should be 0 or 1)")
    parts = tuple(p for p in uri.path.split("/") if p)
    if uri.scheme == "esx" and parts:
        raise raw_error(ErrorCode.INVALID_ARG, ERR, "esx:// URIs take no path; use vpx://vcenter/datacenter/...")
    if uri.scheme == "vpx" and len(parts) < 2:
        raise raw_error(ErrorCode.INVALID_ARG, ERR,
                        "Path has to specify the datacenter and compute resource (vpx://vcenter/dc/cluster/host)")
    cafile = uri.params.get("cacert") or env.get(CACERT_ENV) or None
    return Endpoint(uri.scheme, uri.host, uri.port or 443, uri.user, parts, no_verify != "1", cafile)


def tls_context(endpoint: Endpoint) -> ssl.SSLContext:
    """Verify the server by default (system CAs, or only `cafile` when given); no_verify=1 skips it.

    A context is always passed to pyvmomi: without one it silently skips verification for localhost.
    """
    if not endpoint.verify:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    try:
        return ssl.create_default_context(cafile=endpoint.cafile)
    except (OSError, ssl.SSLError) as exc:
        raise raw_error(ErrorCode.INVALID_ARG, ERR,
                        f"cannot load CA certificates from {endpoint.cafile}: {exc}") from exc


# -- faults ---------------------------------------------------------------------------------------------
_NOT_FOUND = ErrorCode.OK  # placeholder in the table: the caller says what "not found" means


def _fault_table() -> list[tuple[type, ErrorCode]]:
    vim, vmodl = load_pyvmomi()
    f, m = vim.fault, vmodl.fault
    return [  # subclasses before their bases
        (f.InvalidLogin, ErrorCode.AUTH_FAILED),
        (f.NotAuthenticated, ErrorCode.AUTH_FAILED),
        (f.NoPermission, ErrorCode.OPERATION_DENIED),
        (m.ManagedObjectNotFound, _NOT_FOUND),
        (f.NotFound, _NOT_FOUND),
        (f.TooManySnapshotLevels, ErrorCode.OPERATION_INVALID),
        (f.ApplicationQuiesceFault, ErrorCode.OPERATION_FAILED),
        (f.FilesystemQuiesceFault, ErrorCode.OPERATION_FAILED),
        (f.ToolsUnavailable, ErrorCode.AGENT_UNRESPONSIVE),
        (f.TaskInProgress, ErrorCode.RESOURCE_BUSY),
        (f.SnapshotLocked, ErrorCode.RESOURCE_BUSY),
        (f.SnapshotDisabled, ErrorCode.OPERATION_UNSUPPORTED),
        (f.MultipleSnapshotsNotSupported, ErrorCode.OPERATION_UNSUPPORTED),
        (f.SnapshotIncompatibleDeviceInVm, ErrorCode.OPERATION_UNSUPPORTED),
        (f.MemorySnapshotOnIndependentDisk, ErrorCode.OPERATION_UNSUPPORTED),
        (f.InvalidState, ErrorCode.OPERATION_INVALID),  # includes InvalidPowerState
        (m.MethodNotFound, ErrorCode.NO_SUPPORT),
        (m.NotSupported, ErrorCode.NO_SUPPORT),
        (m.InvalidArgument, ErrorCode.INVALID_ARG),
        (m.RequestCanceled, ErrorCode.OPERATION_ABORTED),
        (vmodl.MethodFault, ErrorCode.OPERATION_FAILED),
    ]


_FAULTS: list[tuple[type, ErrorCode]] | None = None


def fault_text(fault: Any) -> str:
    """A readable account of a vSphere fault: its message, else its type (vcsim's msg is a Go type name)."""
    kind = type(fault).__name__.rsplit(".", 1)[-1]
    msg = str(getattr(fault, "msg", "") or "")
    if not msg or msg.startswith("*types."):
        msg = kind
    elif kind not in msg:
        msg = f"{msg} ({kind})"
    existing = getattr(fault, "existingState", None)
    if existing:
        msg += f"; the VM is {existing}"
    return msg


def translate(exc: BaseException, what: str, missing: ErrorCode = ErrorCode.OPERATION_FAILED) -> libvirtError:
    """The libvirtError for a fault (or transport error) met while doing `what`."""
    global _FAULTS
    if isinstance(exc, libvirtError):
        return exc
    if isinstance(exc, (OSError, http.client.HTTPException)):
        return raw_error(ErrorCode.SYSTEM_ERROR, ERR, f"{what}: connection failed: {exc}")
    if _FAULTS is None:
        _FAULTS = _fault_table()
    for cls, code in _FAULTS:
        if isinstance(exc, cls):
            return error(missing if code is _NOT_FOUND else code, ERR, f"{what}: {fault_text(exc)}")
    return error(ErrorCode.INTERNAL_ERROR, ERR, f"{what}: {type(exc).__name__}: {exc}")


# -- the session ----------------------------------------------------------------------------------------
class Session:
    """A logged-in connection to one ESX host, or to one host of a vCenter (libvirt's vpx path)."""

    def __init__(self, endpoint: Endpoint, credentials: CredentialSource) -> None:
        self.vim, self.vmodl = load_pyvmomi()
        from pyVim.connect import SmartConnect

        self.endpoint = endpoint
        self.task_timeout = DEFAULT_TASK_TIMEOUT
        self._waiter: Any = None  # a private PropertyCollector for task waits, made on first use
        ctx = tls_context(endpoint)
        creds = credentials.credentials(endpoint.user)
        self.user = creds.user
        try:
            self.si = SmartConnect(  # type: ignore[no-untyped-call]
                protocol="https", host=endpoint.host, port=endpoint.port, user=creds.user, pwd=creds.password,
                sslContext=ctx)
        except self.vim.fault.InvalidLogin as exc:
            raise error(ErrorCode.AUTH_FAILED, ERR,
                        f"cannot log in to {endpoint.address} as '{creds.user}' with the password from "
                        f"{creds.source}: incorrect user name or password") from exc
        except ssl.SSLCertVerificationError as exc:
            hint = ("trust its CA with ?cacert=FILE or $" + CACERT_ENV + ", or skip verification with ?no_verify=1")
            raise raw_error(ErrorCode.SYSTEM_ERROR, ERR,
                            f"TLS certificate of {endpoint.address} cannot be verified: "
                            f"{exc.verify_message}; {hint}") from exc
        except (OSError, http.client.HTTPException) as exc:
            raise raw_error(ErrorCode.SYSTEM_ERROR, ERR, f"unable to connect to {endpoint.address}: {exc}") from exc
        except self.vmodl.MethodFault as exc:
            raise translate(exc, f"cannot log in to {endpoint.address}") from exc
        del creds
        stub = self.si._stub
        self.fast_reads = all(hasattr(stub, attr) for attr in _STUB_ATTRS)
        try:
            self.content = self.si.RetrieveContent()
            self.pc = self.content.propertyCollector
            self.api_type = str(self.content.about.apiType)
            self._check_product()
            self.host = self._locate_host()
        except libvirtError:
            self.close()
            raise
        except Exception as exc:
            self.close()
            raise translate(exc, f"cannot open {endpoint.scheme}://{endpoint.address}") from exc

    def _check_product(self) -> None:
        expected = "HostAgent" if self.endpoint.scheme == "esx" else "VirtualCenter"
        if self.api_type != expected:
            kind = "an ESX host" if self.api_type == "HostAgent" else "a vCenter" \
                if self.api_type == "VirtualCenter" else f"a '{self.api_type}' endpoint"
            wanted = "esx://" if self.api_type == "HostAgent" else "vpx://vcenter/datacenter/cluster/host"
            raise error(ErrorCode.NO_CONNECT, ERR,
                        f"{self.endpoint.scheme}://{self.endpoint.address} ({self.endpoint.host} is {kind}; use "
                        f"{wanted})")

    def _locate_host(self) -> Any:
        """esx: the one HostSystem. vpx: datacenter (maybe inside folders) / compute resource [/ host]."""
        vim = self.vim
        if self.endpoint.scheme == "esx":
            view = self.content.viewManager.CreateContainerView(self.content.rootFolder, [vim.HostSystem], True)
            try:
                hosts = list(view.view)
            finally:
                view.Destroy()
            if len(hosts) != 1:
                raise error(ErrorCode.INTERNAL_ERROR, ERR, f"expected one host system, found {len(hosts)}")
            return hosts[0]
        parts = self.endpoint.path
        find = self.content.searchIndex.FindByInventoryPath
        shown = "/".join(parts)
        for i in range(1, len(parts)):
            datacenter = find("/".join(parts[:i]))
            if isinstance(datacenter, vim.Datacenter):
                break
        else:
            raise error(ErrorCode.INVALID_ARG, ERR, f"no datacenter in path '{shown}'")
        base = "/".join(parts[:i]) + "/host"
        rest = parts[i:]
        for j in range(1, len(rest) + 1):
            compute = find(base + "/" + "/".join(rest[:j]))
            if isinstance(compute, vim.ComputeResource):
                break
        else:
            raise error(ErrorCode.INVALID_ARG, ERR, f"no cluster or compute resource in path '{shown}'")
        remaining = rest[j:]
        hosts = list(compute.host)
        if not remaining:
            if len(hosts) != 1:
                raise error(ErrorCode.INVALID_ARG, ERR,
                            f"path '{shown}' names a cluster of {len(hosts)} hosts: add the host system's name")
            return hosts[0]
        if len(remaining) > 1:
            raise error(ErrorCode.INVALID_ARG, ERR, f"path '{shown}' has extra parts after the host system")
        for host in hosts:
            if host.name == remaining[0]:
                return host
        raise error(ErrorCode.INVALID_ARG, ERR, f"no host system '{remaining[0]}' in '{'/'.join(parts[:i + j])}'")

    def close(self) -> None:
        from pyVim.connect import Disconnect

        try:
            if self._waiter is not None:
                self._waiter.Destroy()
            Disconnect(self.si)  # type: ignore[no-untyped-call]
        except Exception:  # closing a dead session must not fail
            pass
        self._waiter = None

    # -- property reads (one round trip each) --------------------------------------------------------
    def _retrieve(self, spec: Any) -> Iterator[Any]:
        pcm = self.vmodl.query.PropertyCollector
        result = self.pc.RetrievePropertiesEx([spec], pcm.RetrieveOptions())
        while result is not None:
            yield from result.objects
            if not result.token:
                break
            result = self.pc.ContinueRetrievePropertiesEx(result.token)

    @staticmethod
    def _values(content: Any) -> dict[str, Any]:
        for missing in content.missingSet or ():
            raise missing.fault  # an error reading a property (an unset one is simply absent)
        return {p.name: p.val for p in content.propSet or ()}

    def props(self, obj: Any, paths: list[str]) -> dict[str, Any]:
        """Read `paths` of one managed object in one RetrievePropertiesEx call; unset ones are absent."""
        pcm = self.vmodl.query.PropertyCollector
        spec = pcm.FilterSpec(objectSet=[pcm.ObjectSpec(obj=obj, skip=False)],
                              propSet=[pcm.PropertySpec(type=type(obj), pathSet=paths, all=False)])
        for content in self._retrieve(spec):
            return self._values(content)
        raise self.vmodl.fault.ManagedObjectNotFound(obj=obj)

    def props_fast(self, obj: Any, paths: list[str]) -> dict[str, Any]:
        """props() for `snapshot` and scalar properties, the answer parsed with lxml instead of pyvmomi's
        deserializer (which spends ~50 ms on a 200-snapshot tree). Still one round trip; anything unusual
        (a fault, a missing property, a compressed or complex answer) is read again through props()."""
        if self.fast_reads:
            try:
                values = self._props_raw(obj, paths)
            except (AttributeError, TypeError):
                self.fast_reads = False  # a pyvmomi whose stub differs: use its own path from now on
                values = None
            if values is not None:
                return values
        return self.props(obj, paths)

    def _props_raw(self, obj: Any, paths: list[str]) -> dict[str, Any] | None:
        pcm = self.vmodl.query.PropertyCollector
        spec = pcm.FilterSpec(objectSet=[pcm.ObjectSpec(obj=obj, skip=False)],
                              propSet=[pcm.PropertySpec(type=type(obj), pathSet=paths, all=False)])
        stub = self.si._stub
        info = type(self.pc)._GetMethodInfo("RetrievePropertiesEx")
        body = stub.SerializeRequest(self.pc, info, [[spec], pcm.RetrieveOptions()])
        for modifier in stub.requestModifierList:
            body = modifier(body)
        headers = {"Cookie": stub.cookie, "SOAPAction": stub.versionId, "Content-Type": "text/xml; charset=UTF-8"}
        conn = stub.GetConnection()
        try:
            conn.request("POST", stub.path, body, headers)
            resp = conn.getresponse()
            data = resp.read()
        except (OSError, http.client.HTTPException):
            conn.close()
            stub.DropConnections()
            raise
        stub.ReturnConnection(conn)
        if resp.status != 200 or resp.getheader("Content-Encoding", "identity").lower() != "identity":
            return None
        return self._parse_props(data)

    def _parse_props(self, data: bytes) -> dict[str, Any] | None:
        etree = lxml_etree()
        try:
            root = etree.fromstring(data, safe_parser())
        except etree.XMLSyntaxError:
            return None
        stub = self.si._stub
        vim = self.vim

        def make_ref(kind: str, moid: str) -> Any:
            cls = vim.vm.Snapshot if kind == "VirtualMachineSnapshot" else getattr(vim, kind, None)
            if cls is None:
                raise TypeError(kind)
            return cls(moid, stub)

        values: dict[str, Any] = {}
        found = False
        for objects in root.iter("{*}objects"):
            found = True
            for prop in objects:
                tag = etree.QName(prop).localname
                if tag == "missingSet":
                    return None  # let pyvmomi deserialize the fault
                if tag != "propSet":
                    continue
                name = prop.findtext("{*}name")
                val = prop.find("{*}val")
                if name is None or val is None:
                    return None
                if name == "snapshot":
                    values[name] = parse_snapshot_info(val, make_ref)
                elif len(val):
                    return None  # a data object: only pyvmomi knows its type
                else:
                    values[name] = val.text or ""
        return values if found else None

    def host_vms(self, paths: list[str]) -> list[tuple[Any, dict[str, Any]]]:
        """Every VM registered on the host, with `paths` read, in one RetrievePropertiesEx call."""
        pcm = self.vmodl.query.PropertyCollector
        traverse = pcm.TraversalSpec(name="hostVms", type=self.vim.HostSystem, path="vm", skip=False)
        spec = pcm.FilterSpec(objectSet=[pcm.ObjectSpec(obj=self.host, skip=True, selectSet=[traverse])],
                              propSet=[pcm.PropertySpec(type=self.vim.VirtualMachine, pathSet=paths, all=False)])
        out = []
        for content in self._retrieve(spec):
            try:
                out.append((content.obj, self._values(content)))
            except self.vmodl.MethodFault:
                continue  # a VM we may not read (or one being removed) is not listed
        return out

    # -- tasks --------------------------------------------------------------------------------------
    def run_task(self, start: Callable[[], Any], what: str, missing: ErrorCode = ErrorCode.OPERATION_FAILED,
                 progress: ProgressCallback | None = None) -> Any:
        """Start a task and wait for it; returns its result. Faults are translated (`what` leads the message).

        On a timeout (VIR_ERR_OPERATION_TIMEOUT) the task goes on running on the server.
        """
        try:
            task = start()
            return self.wait(task, what, progress, missing)
        except libvirtError:
            raise
        except Exception as exc:
            raise translate(exc, what, missing) from exc

    def wait(self, task: Any, what: str, progress: ProgressCallback | None = None,
             missing: ErrorCode = ErrorCode.OPERATION_FAILED) -> Any:
        """Wait for a task: one read of task.info first (most snapshot tasks are done by then), then
        WaitForUpdatesEx on a private collector until it finishes or the deadline passes. No sleeps."""
        deadline = time.monotonic() + self.task_timeout
        info = self.props(task, ["info"])["info"]
        if not self._finished(info):
            info = self._wait_updates(task, info, deadline, what, progress)
        if info.state == self.vim.TaskInfo.State.error:
            fault = info.error if info.error is not None else RuntimeError("task failed without a fault")
            raise translate(fault, what, missing) from fault
        if progress is not None:
            progress(what, 100)
        return info.result

    def _finished(self, info: Any) -> bool:
        return info.state in (self.vim.TaskInfo.State.success, self.vim.TaskInfo.State.error)

    def _wait_updates(self, task: Any, info: Any, deadline: float, what: str,
                      progress: ProgressCallback | None) -> Any:
        pcm = self.vmodl.query.PropertyCollector
        if self._waiter is None:
            self._waiter = self.pc.CreatePropertyCollector()
        spec = pcm.FilterSpec(objectSet=[pcm.ObjectSpec(obj=task, skip=False)],
                              propSet=[pcm.PropertySpec(type=self.vim.Task, pathSet=["info"], all=False)])
        filt = self._waiter.CreateFilter(spec, partialUpdates=False)
        last_percent: int | None = None
        try:
            version = ""
            while not self._finished(info):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise error(ErrorCode.OPERATION_TIMEOUT, ERR,
                                f"{what}: task {task._moId} still running after {self.task_timeout:.0f} s "
                                "(it goes on on the server)")
                wait = max(1, min(int(remaining), _MAX_WAIT_SECONDS))
                update = self._waiter.WaitForUpdatesEx(version, pcm.WaitOptions(maxWaitSeconds=wait))
                if update is None:
                    continue  # maxWaitSeconds elapsed without a change
                version = update.version
                for fset in update.filterSet or ():
                    for obj in fset.objectSet or ():
                        for change in obj.changeSet or ():
                            if change.name == "info" and change.val is not None:
                                info = change.val
                if progress is not None and info.progress is not None and info.progress != last_percent:
                    last_percent = int(info.progress)
                    progress(what, last_percent)
        finally:
            filt.Destroy()
        return info
