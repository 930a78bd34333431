"""Opening esx:// against vcsim: credentials, certificate verification on and off, wrong endpoints."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

import pyVmomi  # noqa: F401  (the esx extra: a missing pyVmomi is an error, not a skip)

import virtsnap

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest_vcsim import make_vcsim_fixture
from esxutil import isolate_auth, open_auth, open_conn, password_callback, uri

vcsim = make_vcsim_fixture(scope="module")


def test_open_with_env_password(vcsim: Any, monkeypatch: Any) -> None:
    conn = open_conn(vcsim, monkeypatch)
    try:
        assert conn.getType() == "ESX"
        assert conn.getHostname() == "localhost.localdomain"
        assert conn.getURI() == uri(vcsim)
        assert sorted(d.name() for d in conn.listAllDomains()) == ["ha-host_VM0", "ha-host_VM1"]
        about = conn.driver.session.content.about.version  # what the endpoint says it is
        major, minor, micro = (int(x) for x in (about.split(".") + ["0", "0"])[:3])
        assert conn.getVersion() == major * 1_000_000 + minor * 1000 + micro
        caps = conn.getCapabilities()
        assert caps.count("<domain type='vmware'/>") == 2 and "<arch>x86_64</arch>" in caps
        hw = conn.driver.session.props(conn.driver.session.host, ["hardware"])["hardware"]
        model, mib, cpus, mhz, nodes, sockets, cores, threads = conn.getInfo()
        assert (mib, cpus, mhz) == (hw.memorySize // 2**20, hw.cpuInfo.numCpuThreads, hw.cpuInfo.hz // 10**6)
        assert sockets * cores * threads == cpus and nodes >= 1 and model
    finally:
        conn.close()
    with pytest.raises(virtsnap.libvirtError) as exc:
        conn.listAllDomains()
    assert exc.value.get_error_code() == virtsnap.VIR_ERR_INVALID_CONN


def test_open_auth_callback_user_and_password(vcsim: Any, monkeypatch: Any) -> None:
    isolate_auth(monkeypatch)
    monkeypatch.delenv("VIRTSNAP_ESX_PASSWORD", raising=False)
    conn = virtsnap.openAuth(uri(vcsim, user=False), password_callback(vcsim.password, vcsim.user), 0)
    assert len(conn.listAllDomains()) == 2
    conn.close()


def test_open_with_auth_file(vcsim: Any, monkeypatch: Any, tmp_path: Path) -> None:
    isolate_auth(monkeypatch)
    monkeypatch.delenv("VIRTSNAP_ESX_PASSWORD", raising=False)
    conf = tmp_path / "auth.conf"
    conf.write_text(f"[credentials-sim]\nusername={vcsim.user}\npassword={vcsim.password}\n\n"
                    f"[auth-esx-{vcsim.host}]\ncredentials=sim\n")
    conf.chmod(0o600)
    monkeypatch.setenv("VIRTSNAP_AUTH_CONFIG", str(conf))
    conn = virtsnap.open(uri(vcsim, user=False))  # the user comes from the file too
    assert len(conn.listAllDomains()) == 2
    conn.close()
    conf.chmod(0o640)
    with pytest.raises(virtsnap.libvirtError) as exc:
        virtsnap.open(uri(vcsim))
    assert exc.value.get_error_code() == virtsnap.VIR_ERR_AUTH_FAILED
    assert vcsim.password not in str(exc.value)


def test_bad_password(vcsim: Any, monkeypatch: Any) -> None:
    isolate_auth(monkeypatch)
    monkeypatch.setenv("VIRTSNAP_ESX_PASSWORD", "wrong-Secret-42")
    with pytest.raises(virtsnap.libvirtError) as exc:
        virtsnap.open(uri(vcsim))
    err = exc.value
    assert err.get_error_code() == virtsnap.VIR_ERR_AUTH_FAILED
    assert err.get_error_domain() == virtsnap.VIR_FROM_ESX
    assert "wrong-Secret-42" not in str(err) and "VIRTSNAP_ESX_PASSWORD" in str(err)


def test_bad_user(vcsim: Any) -> None:
    with pytest.raises(virtsnap.libvirtError) as exc:
        virtsnap.openAuth(uri(vcsim, user=False), password_callback(vcsim.password, "nobody"), 0)
    assert exc.value.get_error_code() == virtsnap.VIR_ERR_AUTH_FAILED


def test_no_password_anywhere(vcsim: Any, monkeypatch: Any) -> None:
    isolate_auth(monkeypatch)
    monkeypatch.delenv("VIRTSNAP_ESX_PASSWORD", raising=False)
    monkeypatch.setattr(sys, "stdin", None)
    with pytest.raises(virtsnap.libvirtError) as exc:
        virtsnap.open(uri(vcsim))
    assert exc.value.get_error_code() == virtsnap.VIR_ERR_AUTH_FAILED


def test_certificate_verified_by_default(vcsim: Any, monkeypatch: Any) -> None:
    # 127.0.0.1 is where pyvmomi would silently skip verification: virtsnap must not.
    isolate_auth(monkeypatch)
    with pytest.raises(virtsnap.libvirtError) as exc:
        open_auth(vcsim, params="")
    assert exc.value.get_error_code() == virtsnap.VIR_ERR_SYSTEM_ERROR
    assert "cannot be verified" in str(exc.value) and "no_verify=1" in str(exc.value)


def test_certificate_trusted_by_uri_param(vcsim: Any) -> None:
    conn = open_auth(vcsim, params=f"cacert={vcsim.cert}")
    assert len(conn.listAllDomains()) == 2
    conn.close()


def test_certificate_trusted_by_env(vcsim: Any, monkeypatch: Any, tmp_path: Path) -> None:
    isolate_auth(monkeypatch)
    monkeypatch.setenv("VIRTSNAP_ESX_CACERT", vcsim.cert)
    conn = open_auth(vcsim, params="")
    assert len(conn.listAllDomains()) == 2
    conn.close()
    # A CA that did not sign the server's certificate is not enough.
    other = tmp_path / "other.pem"
    other.write_text(_unrelated_ca(tmp_path))
    monkeypatch.setenv("VIRTSNAP_ESX_CACERT", str(other))
    with pytest.raises(virtsnap.libvirtError) as exc:
        open_auth(vcsim, params="")
    assert exc.value.get_error_code() == virtsnap.VIR_ERR_SYSTEM_ERROR


def _unrelated_ca(tmp_path: Path) -> str:
    """A self-signed certificate made with openssl, unrelated to vcsim's."""
    import subprocess

    key, crt = tmp_path / "k.pem", tmp_path / "c.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", str(key), "-out", str(crt), "-days", "1", "-subj", "/CN=127.0.0.1"],
                   check=True, capture_output=True)
    return crt.read_text()


def test_no_verify_skips_check(vcsim: Any) -> None:
    conn = open_auth(vcsim, params="no_verify=1")
    assert conn.isAlive() == 1
    conn.close()


def test_vpx_uri_against_esx_host(vcsim: Any) -> None:
    with pytest.raises(virtsnap.libvirtError) as exc:
        open_auth(vcsim, scheme="vpx", path="/DC0/DC0_C0")
    assert exc.value.get_error_code() == virtsnap.VIR_ERR_NO_CONNECT
    assert "esx://" in str(exc.value)


def test_connection_refused(monkeypatch: Any) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(virtsnap.libvirtError) as exc:
        virtsnap.openAuth(f"esx://u@127.0.0.1:{port}/?no_verify=1", password_callback("p"), 0)
    assert exc.value.get_error_code() == virtsnap.VIR_ERR_SYSTEM_ERROR


def test_read_only_refuses_changes(vcsim: Any) -> None:
    conn = virtsnap.openAuth(uri(vcsim), password_callback(vcsim.password), virtsnap.VIR_CONNECT_RO)
    dom = conn.lookupByName("ha-host_VM0")
    with pytest.raises(virtsnap.libvirtError) as exc:
        dom.snapshotCreateXML("<domainsnapshot/>", 0)
    assert exc.value.get_error_code() == virtsnap.VIR_ERR_OPERATION_DENIED
    assert dom.snapshotNum() == 0
    conn.close()
