"""Credentials, URI options and fault translation of the ESX driver, without a server."""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import Any

import pytest

from pyVmomi import vim, vmodl

import virtsnap
from virtsnap.drivers.esx.auth import CredentialSource, auth_file_path
from virtsnap.drivers.esx.session import endpoint_from_uri, tls_context, translate
from virtsnap.errors import ErrorCode, libvirtError
from virtsnap.uri import parse_uri

sys.path.insert(0, str(Path(__file__).resolve().parent))
from esxutil import password_callback

HOST = "esx.example.com"
SECRET = "s3cr3t-Pa55"

AUTH_CONF = f"""
[credentials-vmware]
username=root
password={SECRET}

[auth-esx-{HOST}]
credentials=vmware
"""


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def source(auth: Any = None, env: dict[str, str] | None = None, stdin: Any = None, **kw: Any) -> CredentialSource:
    env = {"XDG_CONFIG_HOME": "/nonexistent"} if env is None else env
    return CredentialSource(host=HOST, services=("esx",), default_user="root", auth=auth, env=env,
                            stdin=stdin if stdin is not None else io.StringIO(), **kw)


def write_conf(tmp_path: Path, text: str = AUTH_CONF, mode: int = 0o600) -> Path:
    path = tmp_path / "auth.conf"
    path.write_text(text)
    path.chmod(mode)
    return path


def test_callback_first(tmp_path: Path) -> None:
    conf = write_conf(tmp_path)
    env = {"VIRTSNAP_AUTH_CONFIG": str(conf), "VIRTSNAP_ESX_PASSWORD": "from-env"}
    creds = source(password_callback("from-callback"), env).credentials("root")
    assert (creds.user, creds.password, creds.source) == ("root", "from-callback", "callback")
    assert "from-callback" not in repr(creds)


def test_callback_supplies_user_and_noechoprompt() -> None:
    seen: list[list[Any]] = []

    def callback(creds: list[list[Any]], cbdata: Any) -> int:
        for cred in creds:
            seen.append(list(cred))
            cred[4] = "admin" if cred[0] == virtsnap.VIR_CRED_AUTHNAME else "pw"
        return 0

    auth = [[virtsnap.VIR_CRED_AUTHNAME, virtsnap.VIR_CRED_NOECHOPROMPT], callback, None]
    creds = source(auth).credentials(None)
    assert (creds.user, creds.password) == ("admin", "pw")
    assert [c[0] for c in seen] == [virtsnap.VIR_CRED_AUTHNAME, virtsnap.VIR_CRED_NOECHOPROMPT]
    assert seen[0][3] == "root"  # the default user is offered, as libvirt does


def test_declining_callback_passes_to_next_source() -> None:
    # A CLI's prompting callback without a terminal must not hide the environment or the auth file.
    for callback in (lambda creds, data: -1, lambda creds, data: 0):
        auth = [[virtsnap.VIR_CRED_PASSPHRASE], callback, None]
        assert source(auth, env={"VIRTSNAP_ESX_PASSWORD": "env"}).credentials("root").password == "env"
        with pytest.raises(libvirtError) as exc:
            source(auth, env={}).credentials("root")
        assert exc.value.get_error_code() == ErrorCode.AUTH_FAILED
        assert "Password request failed" in str(exc.value)


def test_raising_callback_is_auth_failed() -> None:
    def callback(creds: Any, data: Any) -> int:
        raise RuntimeError(SECRET)

    with pytest.raises(libvirtError) as exc:
        source([[virtsnap.VIR_CRED_PASSPHRASE], callback, None], env={"VIRTSNAP_ESX_PASSWORD": "x"}).credentials("r")
    assert exc.value.get_error_code() == ErrorCode.AUTH_FAILED and SECRET not in str(exc.value)


def test_auth_file(tmp_path: Path) -> None:
    conf = write_conf(tmp_path)
    creds = source(env={"LIBVIRT_AUTH_FILE": str(conf), "VIRTSNAP_ESX_PASSWORD": "env"}).credentials(None)
    assert (creds.user, creds.password) == ("root", SECRET)
    assert str(conf) in creds.source


def test_auth_file_default_group_and_xdg(tmp_path: Path) -> None:
    (tmp_path / "libvirt").mkdir()
    text = AUTH_CONF.replace(f"auth-esx-{HOST}", "auth-esx-default")
    write_conf(tmp_path / "libvirt", text)
    assert auth_file_path({"XDG_CONFIG_HOME": str(tmp_path)}) == (tmp_path / "libvirt" / "auth.conf", False)
    creds = source(env={"XDG_CONFIG_HOME": str(tmp_path)}).credentials("root")
    assert creds.password == SECRET


def test_auth_file_for_another_user_is_not_used(tmp_path: Path) -> None:
    conf = write_conf(tmp_path)
    creds = source(env={"VIRTSNAP_AUTH_CONFIG": str(conf), "VIRTSNAP_ESX_PASSWORD": "env"}).credentials("bob")
    assert (creds.user, creds.password) == ("bob", "env")


def test_auth_file_world_readable_refused(tmp_path: Path) -> None:
    conf = write_conf(tmp_path, mode=0o644)
    with pytest.raises(libvirtError) as exc:
        source(env={"VIRTSNAP_AUTH_CONFIG": str(conf), "VIRTSNAP_ESX_PASSWORD": "x"}).credentials("root")
    assert exc.value.get_error_code() == ErrorCode.AUTH_FAILED
    assert "chmod 600" in str(exc.value) and SECRET not in str(exc.value)


def test_auth_file_named_but_missing(tmp_path: Path) -> None:
    with pytest.raises(libvirtError) as exc:
        source(env={"VIRTSNAP_AUTH_CONFIG": str(tmp_path / "nope")}).credentials("root")
    assert exc.value.get_error_code() == ErrorCode.AUTH_FAILED


def test_auth_file_parse_error_hides_content(tmp_path: Path) -> None:
    conf = write_conf(tmp_path, f"[credentials-x]\nusername=root\n{SECRET}\n")
    with pytest.raises(libvirtError) as exc:
        source(env={"VIRTSNAP_AUTH_CONFIG": str(conf)}).credentials("root")
    assert exc.value.get_error_code() == ErrorCode.AUTH_FAILED
    assert "line 3" in str(exc.value) and SECRET not in str(exc.value)


def test_environment_then_prompt() -> None:
    assert source(env={"VIRTSNAP_ESX_PASSWORD": "env"}).credentials("root").password == "env"
    prompts: list[str] = []

    def fake_getpass(prompt: str) -> str:
        prompts.append(prompt)
        return "typed"

    creds = source(env={}, stdin=FakeTTY(), read_password=fake_getpass).credentials("root")
    assert creds.password == "typed" and prompts == [f"Enter root's password for {HOST}: "]


def test_user_prompt_on_tty() -> None:
    src = source(env={"VIRTSNAP_ESX_PASSWORD": "env"}, stdin=FakeTTY(), read_line=lambda prompt: "")
    assert src.credentials(None).user == "root"  # empty answer takes the default, as libvirt's prompt does


def test_nothing_available() -> None:
    with pytest.raises(libvirtError) as exc:
        source(env={}).credentials("root")
    assert exc.value.get_error_code() == ErrorCode.AUTH_FAILED
    assert "VIRTSNAP_ESX_PASSWORD" in str(exc.value)
    with pytest.raises(libvirtError) as exc:
        source(env={"VIRTSNAP_ESX_PASSWORD": "x"}).credentials(None)
    assert exc.value.get_error_code() == ErrorCode.AUTH_FAILED
    assert "Username request failed" in str(exc.value)


# -- URIs -------------------------------------------------------------------------------------------------
def test_uri_options() -> None:
    ep = endpoint_from_uri(parse_uri("esx://root@h:8443/?no_verify=1"), env={})
    assert (ep.host, ep.port, ep.user, ep.verify, ep.cafile) == ("h", 8443, "root", False, None)
    ep = endpoint_from_uri(parse_uri("esx://h/"), env={"VIRTSNAP_ESX_CACERT": "/ca.pem"})
    assert (ep.port, ep.verify, ep.cafile) == (443, True, "/ca.pem")
    ep = endpoint_from_uri(parse_uri("vpx://vc/folder/DC0/DC0_C0/DC0_C0_H0?cacert=/x.pem"), env={})
    assert ep.path == ("folder", "DC0", "DC0_C0", "DC0_C0_H0") and ep.cafile == "/x.pem"


@pytest.mark.parametrize("text", [
    "esx://root:hunter2@h/", "esx://h/?bogus=1", "esx://h/?transport=http", "esx://h/?no_verify=yes",
    "esx:///", "esx://h/path", "vpx://vc/", "vpx://vc/DC0",
])
def test_bad_uris(text: str) -> None:
    with pytest.raises(libvirtError) as exc:
        endpoint_from_uri(parse_uri(text), env={})
    assert exc.value.get_error_code() == ErrorCode.INVALID_ARG
    assert "hunter2" not in str(exc.value)


def test_password_in_uri_never_echoed_through_open() -> None:
    with pytest.raises(libvirtError) as exc:
        virtsnap.open("esx://root:hunter2@127.0.0.1:1/?no_verify=1")
    assert exc.value.get_error_code() == ErrorCode.INVALID_ARG  # a password in a URI is refused before connecting
    assert "hunter2" not in str(exc.value)


def test_tls_context() -> None:
    import ssl

    ep = endpoint_from_uri(parse_uri("esx://h/"), env={})
    ctx = tls_context(ep)
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    ctx = tls_context(endpoint_from_uri(parse_uri("esx://h/?no_verify=1"), env={}))
    assert ctx.verify_mode == ssl.CERT_NONE
    with pytest.raises(libvirtError) as exc:
        tls_context(endpoint_from_uri(parse_uri("esx://h/?cacert=/nonexistent.pem"), env={}))
    assert exc.value.get_error_code() == ErrorCode.INVALID_ARG


# -- faults -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fault, expected", [
    (vim.fault.InvalidLogin(), ErrorCode.AUTH_FAILED),
    (vim.fault.NotAuthenticated(), ErrorCode.AUTH_FAILED),
    (vim.fault.NoPermission(), ErrorCode.OPERATION_DENIED),
    (vmodl.fault.ManagedObjectNotFound(), ErrorCode.NO_DOMAIN_SNAPSHOT),
    (vim.fault.NotFound(), ErrorCode.NO_DOMAIN_SNAPSHOT),
    (vim.fault.TooManySnapshotLevels(), ErrorCode.OPERATION_INVALID),
    (vim.fault.ApplicationQuiesceFault(), ErrorCode.OPERATION_FAILED),
    (vim.fault.FilesystemQuiesceFault(), ErrorCode.OPERATION_FAILED),
    (vim.fault.ToolsUnavailable(), ErrorCode.AGENT_UNRESPONSIVE),
    (vim.fault.TaskInProgress(), ErrorCode.RESOURCE_BUSY),
    (vim.fault.SnapshotLocked(), ErrorCode.RESOURCE_BUSY),
    (vim.fault.SnapshotDisabled(), ErrorCode.OPERATION_UNSUPPORTED),
    (vim.fault.InvalidPowerState(existingState="poweredOff"), ErrorCode.OPERATION_INVALID),
    (vim.fault.InvalidState(), ErrorCode.OPERATION_INVALID),
    (vmodl.fault.MethodNotFound(), ErrorCode.NO_SUPPORT),
    (vmodl.fault.InvalidArgument(), ErrorCode.INVALID_ARG),
    (vim.fault.FileFault(), ErrorCode.OPERATION_FAILED),
    (ConnectionResetError("reset"), ErrorCode.SYSTEM_ERROR),
])
def test_fault_translation(fault: Exception, expected: ErrorCode) -> None:
    err = translate(fault, "cannot do it", ErrorCode.NO_DOMAIN_SNAPSHOT)
    assert err.get_error_code() == expected
    assert err.get_error_domain() == virtsnap.VIR_FROM_ESX
    assert err.get_error_message().startswith(("cannot do it", "Requested", "authentication", "operation",
                                               "Domain snapshot", "this function", "invalid", "resource",
                                               "Guest agent", "Operation not"))
    assert "cannot do it" in err.get_error_message()


def test_fault_message_readable() -> None:
    err = translate(vim.fault.InvalidPowerState(msg="*types.InvalidPowerState", existingState="poweredOff"), "x")
    assert "InvalidPowerState" in str(err) and "poweredOff" in str(err) and "*types" not in str(err)
    err = translate(vim.fault.TooManySnapshotLevels(msg="Exceeded the maximum number of permitted snapshots."), "y")
    assert "maximum number" in str(err) and "TooManySnapshotLevels" in str(err)
