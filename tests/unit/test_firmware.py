"""UEFI without a guest: <os firmware='efi'> resolved from Debian's real QEMU firmware descriptors by libvirt's
rules, the argv QEMU gets, the refusals, and the domain's own NVRAM store (made from its template, in the
ledger; a user's file never written over) with offline snapshots, reverts and deletes that include it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import virtsnap
from virtsnap.conf.domain_xml import DomainDef
from virtsnap.drivers.qemu import argv, firmware
from virtsnap.drivers.qemu.domain import QemuDomain

OVMF = "/usr/share/OVMF"
UUID = "6f1c2a52-1d7e-4a3b-9e45-6c2b0a7d9e11"


def domain(os_extra: str = "", machine: str = "q35", features: str = "", firmware_attr: str = " firmware='efi'",
           disk: str = "", devices: str = "") -> str:
    return (f"<domain type='qemu'><name>u</name><uuid>{UUID}</uuid><memory unit='MiB'>64</memory>"
            f"<os{firmware_attr}><type arch='x86_64' machine='{machine}'>hvm</type>{os_extra}</os>"
            f"<features><acpi/>{features}</features><devices>{disk}{devices}</devices></domain>")


def filled(xml: str, state: Path = Path("/state"), dirs: tuple[str, ...] = firmware.DESCRIPTOR_DIRS) -> DomainDef:
    return firmware.fill(DomainDef.parse(xml), state, (7, 2, 0), dirs)


def loader_of(defn: DomainDef) -> tuple[str | None, str | None, str | None]:
    os_node = defn.node.find("os")
    assert os_node is not None
    loader, nvram = os_node.find("loader"), os_node.find("nvram")
    assert loader is not None and nvram is not None
    return loader.text, loader.get("secure"), nvram.get("template")


def smm_of(defn: DomainDef) -> str | None:
    features = defn.node.find("features")
    smm = features.find("smm") if features is not None else None
    return smm.get("state") if smm is not None else None


def test_plain_efi_on_q35_takes_the_first_descriptor_secure_boot_with_keys_and_smm():
    # libvirt 9.0 on Debian 12: 40-edk2-x86_64-secure-enrolled.json fits first, and brings SMM with it
    defn = filled(domain())
    assert loader_of(defn) == (f"{OVMF}/OVMF_CODE_4M.ms.fd", "yes", f"{OVMF}/OVMF_VARS_4M.ms.fd")
    assert smm_of(defn) == "on"
    nvram = defn.node.find("os").find("nvram")  # type: ignore[union-attr]
    assert nvram.text == f"/state/nvram/{UUID}_VARS.qcow2" and nvram.get("format") == "qcow2"
    args = argv.build(QemuDomain.from_def(defn), argv.Descriptors(3, nvram=4), "/usr/bin/qemu-system-x86_64")
    assert "q35,acpi=on,smm=on" in args and "driver=cfi.pflash01,property=secure,value=on" in args
    assert f"pflash0={firmware.CODE_NODE},pflash1={firmware.NVRAM_NODE}" in args
    code = json.loads(args[args.index("-blockdev") + 1])
    assert code["filename"] == f"{OVMF}/OVMF_CODE_4M.ms.fd" and code["read-only"] is True
    nodes = [json.loads(a) for a in args[1:] if a.startswith("{")]
    nvram_node = next(n for n in nodes if n.get("node-name") == firmware.NVRAM_NODE)
    assert nvram_node["driver"] == "qcow2" and nvram_node["read-only"] is False  # never probed
    assert not any(n.get("drive") == firmware.NVRAM_NODE for n in nodes)  # a pflash node, no -device
    # QEMU gets the NVRAM as virtsnap's descriptor: the store lies in virtsnap's private directory
    assert f"fd=4,set={argv.NVRAM_FDSET}" in args
    assert next(n for n in nodes if n.get("node-name") == f"{firmware.NVRAM_NODE}-file")["filename"] == \
        f"/dev/fdset/{argv.NVRAM_FDSET}"


@pytest.mark.parametrize(("wishes", "machine", "code", "template", "secure"), [
    ("<feature enabled='no' name='secure-boot'/>", "q35", "OVMF_CODE_4M.fd", "OVMF_VARS_4M.fd", "no"),
    ("<feature enabled='yes' name='secure-boot'/><feature enabled='no' name='enrolled-keys'/>", "q35",
     "OVMF_CODE_4M.secboot.fd", "OVMF_VARS_4M.fd", "yes"),
    ("<feature enabled='yes' name='enrolled-keys'/>", "pc-q35-7.2", "OVMF_CODE_4M.ms.fd", "OVMF_VARS_4M.ms.fd",
     "yes"),
    ("", "pc", "OVMF_CODE_4M.fd", "OVMF_VARS_4M.fd", "no"),  # only the plain one lists i440fx machines
])
def test_firmware_features_and_machine_choose_the_descriptor(wishes, machine, code, template, secure):
    defn = filled(domain(f"<firmware>{wishes}</firmware>" if wishes else "", machine=machine))
    assert loader_of(defn) == (f"{OVMF}/{code}", secure, f"{OVMF}/{template}")
    assert smm_of(defn) == ("on" if secure == "yes" else None)
    args = argv.build(QemuDomain.from_def(defn), argv.Descriptors(3, nvram=4), "/usr/bin/qemu-system-x86_64")
    assert ("driver=cfi.pflash01,property=secure,value=on" in args) == (secure == "yes")


def test_smm_off_and_loader_secure_no_rule_out_smm_firmware():
    assert loader_of(filled(domain(features="<smm state='off'/>")))[0] == f"{OVMF}/OVMF_CODE_4M.fd"
    assert loader_of(filled(domain("<loader secure='no'/>")))[0] == f"{OVMF}/OVMF_CODE_4M.fd"
    assert loader_of(filled(domain("<loader secure='yes'/>")))[0] == f"{OVMF}/OVMF_CODE_4M.ms.fd"


@pytest.mark.parametrize("xml", [
    domain("<firmware><feature enabled='yes' name='secure-boot'/></firmware>", machine="pc"),
    domain("<loader secure='yes'/>", features="<smm state='off'/>"),
    domain(f"<loader>{OVMF}/OVMF_CODE.fd</loader>"),  # no descriptor names this (2M) build
])
def test_no_descriptor_fits_is_libvirts_error(xml):
    with pytest.raises(virtsnap.libvirtError) as info:
        filled(xml)
    assert info.value.get_error_code() == virtsnap.VIR_ERR_OPERATION_FAILED
    assert str(info.value) == "operation failed: Unable to find any firmware to satisfy 'efi'"


def test_descriptor_directories_override_by_name_and_an_empty_file_masks(tmp_path):
    low, high = tmp_path / "usr", tmp_path / "etc"
    low.mkdir()
    high.mkdir()
    base = json.loads(Path("/usr/share/qemu/firmware/60-edk2-x86_64.json").read_text())
    base["mapping"]["executable"]["filename"] = "/opt/A.fd"
    (low / "10-a.json").write_text(json.dumps(base))
    base["mapping"]["executable"]["filename"] = "/opt/B.fd"
    (high / "10-a.json").write_text(json.dumps(base))  # same name, later directory: replaces the first
    assert loader_of(filled(domain(), dirs=(str(low), str(high))))[0] == "/opt/B.fd"
    (high / "10-a.json").write_text("")
    with pytest.raises(virtsnap.libvirtError):
        filled(domain(), dirs=(str(low), str(high)))


def test_explicit_loader_keeps_the_users_nvram_and_finds_its_template():
    xml = domain(f"<loader readonly='yes' type='pflash'>{OVMF}/OVMF_CODE_4M.fd</loader><nvram>/vm/u_VARS.fd</nvram>",
                 firmware_attr="")
    defn = filled(xml)
    assert loader_of(defn) == (f"{OVMF}/OVMF_CODE_4M.fd", None, f"{OVMF}/OVMF_VARS_4M.fd")
    qdom = QemuDomain.from_def(defn)
    assert qdom.firmware is not None and qdom.firmware.nvram == "/vm/u_VARS.fd"
    assert qdom.firmware.nvram_format == "raw"  # libvirt's format for a named NVRAM
    with pytest.raises(virtsnap.libvirtError) as info:  # a raw NVRAM holds no snapshot: said by name
        firmware.state_image(qdom)
    assert info.value.get_error_code() == virtsnap.VIR_ERR_CONFIG_UNSUPPORTED and "/vm/u_VARS.fd" in str(info.value)


@pytest.mark.parametrize(("xml", "words"), [
    (domain(f"<loader readonly='no' type='pflash'>{OVMF}/OVMF_CODE_4M.fd</loader>", firmware_attr=""),
     "read-only <loader"),
    (domain(f"<loader readonly='yes' type='rom'>{OVMF}/OVMF_CODE_4M.fd</loader>", firmware_attr=""),
     "type='rom' of <domain/os/loader>"),
    (domain(f"<loader readonly='yes' type='pflash' secure='yes'>{OVMF}/OVMF_CODE_4M.secboot.fd</loader>",
            firmware_attr=""), "Secure boot requires SMM"),
    (domain(f"<loader readonly='yes' type='pflash' secure='yes'>{OVMF}/OVMF_CODE_4M.secboot.fd</loader>",
            machine="pc", features="<smm state='on'/>", firmware_attr=""), "q35 machine types only"),
    (domain("<firmware><feature enabled='yes' name='amd-sev'/></firmware>"), "name='amd-sev'"),
    (domain(firmware_attr=" firmware='xen'"), "firmware='xen'"),
    (domain(disk="<disk type='file' device='disk'><source file='/vm/x.qcow2'/><driver name='qemu' type='qcow2'/>"
                 "<target dev='nvram' bus='virtio'/></disk>"), "disk target 'nvram'"),
])
def test_refused_firmware_configurations_name_the_item(xml, words):
    with pytest.raises(virtsnap.libvirtError) as info:
        QemuDomain.from_def(filled(xml))
    assert info.value.get_error_code() in (virtsnap.VIR_ERR_CONFIG_UNSUPPORTED, virtsnap.VIR_ERR_OPERATION_FAILED)
    assert words in str(info.value)


# -- the NVRAM store, through the driver, with the domain off ------------------------------------------
def _nvram_bytes(path: str, tmp: Path) -> bytes:
    out = tmp / "nvram.raw"
    out.unlink(missing_ok=True)
    subprocess.run(["qemu-img", "convert", "-U", "-f", "qcow2", "-O", "raw", path, str(out)], check=True)
    return out.read_bytes()


def _scribble(path: str, byte: int) -> None:
    """Change the variable store's first 4 KiB as a guest writing a variable would (qemu-io: real QEMU I/O)."""
    subprocess.run(["qemu-io", "-f", "qcow2", "-c", f"write -P {byte} 0 4k", path], check=True, capture_output=True)


def _image_tags(path: str) -> list[str]:
    out = subprocess.run(["qemu-img", "info", "-U", "-f", "qcow2", "--output=json", path], capture_output=True,
                         text=True, check=True).stdout
    return [s["name"] for s in json.loads(out).get("snapshots", [])]


def test_nvram_store_made_at_define_in_ledger_and_in_every_offline_snapshot(tmp_path, monkeypatch):
    monkeypatch.setenv("VIRTSNAP_QEMU_STATE_DIR", str(tmp_path / "state"))
    disk = tmp_path / "d.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "16M"], check=True)
    conn = virtsnap.open("qemu:///session")
    dom = conn.defineXML(domain("<firmware><feature enabled='no' name='secure-boot'/></firmware>", disk=(
        f"<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='{disk}'/>"
        "<target dev='vda' bus='virtio'/></disk>")))
    nvram = firmware.own_nvram(tmp_path / "state", UUID)
    assert f"<nvram template='{OVMF}/OVMF_VARS_4M.fd' format='qcow2'>{nvram}</nvram>" in dom.XMLDesc()
    info = json.loads(subprocess.run(["qemu-img", "info", "-U", "--output=json", "-f", "qcow2", nvram],
                                     capture_output=True, text=True, check=True).stdout)
    assert info["format"] == "qcow2" and info["virtual-size"] == os.path.getsize(f"{OVMF}/OVMF_VARS_4M.fd")
    template = Path(f"{OVMF}/OVMF_VARS_4M.fd").read_bytes()
    assert _nvram_bytes(nvram, tmp_path) == template
    assert conn.driver.store.ledger_row(nvram).purpose == "nvram"

    s1 = dom.snapshotCreateXML("<domainsnapshot><name>s1</name></domainsnapshot>")
    assert _image_tags(nvram) == ["s1"] and _image_tags(str(disk)) == ["s1"]
    _scribble(nvram, 0x55)
    e1 = dom.snapshotCreateXML(
        f"<domainsnapshot><name>e1</name><disks><disk name='vda' snapshot='external'><source file='{tmp_path}/o1'/>"
        "</disk></disks></domainsnapshot>", virtsnap.VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY)
    assert _image_tags(nvram) == ["s1", "e1"]
    _scribble(nvram, 0x66)
    with pytest.raises(virtsnap.libvirtError) as refused:  # d.qcow2 now holds e1's disk: never rewritten
        dom.revertToSnapshot(s1)
    assert refused.value.get_error_code() == virtsnap.VIR_ERR_OPERATION_INVALID
    assert "external snapshot 'e1'" in str(refused.value)
    assert _nvram_bytes(nvram, tmp_path)[:4096] == b"\x66" * 4096  # nothing changed
    dom.revertToSnapshot(e1)
    assert _nvram_bytes(nvram, tmp_path)[:4096] == b"\x55" * 4096
    e1.delete()
    dom.revertToSnapshot(s1)
    assert _nvram_bytes(nvram, tmp_path) == template
    s1.delete()
    assert _image_tags(nvram) == []
    assert os.path.exists(nvram)  # the domain's own store stays while the domain does


def test_a_users_existing_nvram_is_used_as_is_and_a_raw_one_refuses_snapshots(tmp_path, monkeypatch):
    monkeypatch.setenv("VIRTSNAP_QEMU_STATE_DIR", str(tmp_path / "state"))
    mine = tmp_path / "u_VARS.fd"
    mine.write_bytes(b"\x11" * 540672)
    conn = virtsnap.open("qemu:///session")
    dom = conn.defineXML(domain(f"<firmware><feature enabled='no' name='secure-boot'/></firmware><nvram>{mine}"
                                "</nvram>"))
    assert mine.read_bytes() == b"\x11" * 540672 and conn.driver.store.ledger_row(str(mine)) is None
    with pytest.raises(virtsnap.libvirtError) as info:
        dom.snapshotCreateXML("<domainsnapshot><name>s1</name></domainsnapshot>")
    assert info.value.get_error_code() == virtsnap.VIR_ERR_CONFIG_UNSUPPORTED and str(mine) in str(info.value)
    assert dom.snapshotNum() == 0
    with pytest.raises(virtsnap.libvirtError) as refused:  # --nvram never removes a file virtsnap did not make
        dom.undefineFlags(virtsnap.VIR_DOMAIN_UNDEFINE_NVRAM)
    assert refused.value.get_error_code() == virtsnap.VIR_ERR_OPERATION_INVALID and str(mine) in str(refused.value)
    dom.undefineFlags(virtsnap.VIR_DOMAIN_UNDEFINE_KEEP_NVRAM)
    assert mine.read_bytes() == b"\x11" * 540672 and conn.listAllDomains() == []


def test_undefine_asks_what_becomes_of_the_nvram_as_libvirt_does(tmp_path, monkeypatch):
    monkeypatch.setenv("VIRTSNAP_QEMU_STATE_DIR", str(tmp_path / "state"))
    conn = virtsnap.open("qemu:///session")
    xml = domain("<firmware><feature enabled='no' name='secure-boot'/></firmware>")
    dom = conn.defineXML(xml)
    nvram = Path(firmware.own_nvram(tmp_path / "state", UUID))
    with pytest.raises(virtsnap.libvirtError) as info:
        dom.undefine()
    assert info.value.get_error_code() == virtsnap.VIR_ERR_OPERATION_INVALID
    assert str(info.value) == "Requested operation is not valid: cannot undefine domain with nvram"
    assert nvram.exists() and len(conn.listAllDomains()) == 1
    dom.undefineFlags(virtsnap.VIR_DOMAIN_UNDEFINE_KEEP_NVRAM)
    assert nvram.exists() and conn.driver.store.ledger_row(str(nvram)) is None  # the user's file now
    dom = conn.defineXML(xml)  # the kept store is used again as it is, and is not virtsnap's any more
    with pytest.raises(virtsnap.libvirtError):
        dom.undefineFlags(virtsnap.VIR_DOMAIN_UNDEFINE_NVRAM)
    dom.undefineFlags(virtsnap.VIR_DOMAIN_UNDEFINE_KEEP_NVRAM)
    nvram.unlink()
    dom = conn.defineXML(xml)  # made afresh: virtsnap's again
    dom.undefineFlags(virtsnap.VIR_DOMAIN_UNDEFINE_NVRAM)
    assert not nvram.exists() and conn.listAllDomains() == []


def test_a_named_nvram_that_does_not_exist_is_made_raw_from_the_template_and_is_ours(tmp_path, monkeypatch):
    monkeypatch.setenv("VIRTSNAP_QEMU_STATE_DIR", str(tmp_path / "state"))
    path = tmp_path / "new_VARS.fd"
    conn = virtsnap.open("qemu:///session")
    conn.defineXML(domain(f"<firmware><feature enabled='no' name='secure-boot'/></firmware><nvram>{path}</nvram>"))
    assert path.read_bytes() == Path(f"{OVMF}/OVMF_VARS_4M.fd").read_bytes()
    assert conn.driver.store.ledger_row(str(path)).purpose == "nvram"


def test_nvram_inside_virtsnaps_state_other_than_its_own_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("VIRTSNAP_QEMU_STATE_DIR", str(tmp_path / "state"))
    conn = virtsnap.open("qemu:///session")
    with pytest.raises(virtsnap.libvirtError) as info:
        conn.defineXML(domain(f"<nvram>{tmp_path}/state/metadata.db</nvram>"))
    assert info.value.get_error_code() == virtsnap.VIR_ERR_CONFIG_UNSUPPORTED
    assert conn.listAllDomains() == []


# -- a process killed inside each step: the next one finds the NVRAM's tags matching the snapshots ----------
def _crash(state: Path, failpoint: str, *argv: str) -> None:
    env = dict(os.environ, VIRTSNAP_QEMU_STATE_DIR=str(state), VIRTSNAP_FAILPOINTS=f"{failpoint}=sigkill")
    proc = subprocess.run([sys.executable, "-m", "virtsnap", "-c", "qemu:///session", *argv], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, f"{failpoint} was not reached: {proc.returncode} {proc.stderr}"


def test_killed_offline_operations_leave_the_nvram_tags_as_the_snapshots_say(tmp_path, monkeypatch):
    state = tmp_path / "state"
    monkeypatch.setenv("VIRTSNAP_QEMU_STATE_DIR", str(state))
    disk = tmp_path / "d.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "16M"], check=True)
    virtsnap.open("qemu:///session").defineXML(domain(
        "<firmware><feature enabled='no' name='secure-boot'/></firmware>",
        disk=f"<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='{disk}'/>"
             "<target dev='vda' bus='virtio'/></disk>"))
    nvram = firmware.own_nvram(state, UUID)

    def settled() -> tuple[list[str], str]:
        conn = virtsnap.open("qemu:///session")  # the next process: it finishes what the killed one left
        dom = conn.lookupByName("u")
        names = sorted(dom.snapshotListNames())
        assert sorted(_image_tags(nvram)) == names  # every snapshot has its NVRAM part, and nothing else is there
        drift = [f for f in dom.snapshotCheck(0) if f.drift and not f.repaired]
        assert not drift
        current = dom.snapshotCurrent().getName() if dom.hasCurrentSnapshot() else ""
        conn.close()
        return names, current

    outcomes = {}
    for i, point in enumerate(("create.journaled", "create.data-done")):
        _crash(state, point, "snapshot-create-as", "u", f"i{i}")
        outcomes[point] = settled()
    for i, point in enumerate(("delete.journaled", "delete.data-done")):
        virtsnap.open("qemu:///session").lookupByName("u").snapshotCreateXML(
            f"<domainsnapshot><name>d{i}</name></domainsnapshot>")
        _crash(state, point, "snapshot-delete", "u", f"d{i}")
        outcomes[point] = settled()
    for i, point in enumerate(("external.overlays-created", "ledger.recorded", "external.switched")):
        _crash(state, point, "snapshot-create-as", "u", f"e{i}", "--disk-only", "--diskspec",
               f"vda,file={tmp_path}/o{i}.qcow2")
        outcomes[point] = settled()
    virtsnap.open("qemu:///session").lookupByName("u").snapshotCreateXML(
        f"<domainsnapshot><name>x</name><disks><disk name='vda' snapshot='external'><source file='{tmp_path}/x.qcow2'/>"
        "</disk></disks></domainsnapshot>", virtsnap.VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY)
    _crash(state, "revert-external.stopped", "snapshot-revert", "u", "x")
    outcomes["revert-external.stopped"] = settled()
    assert outcomes["create.journaled"][0] == [] and outcomes["create.data-done"][0] == ["i1"]  # rolled forward
    assert outcomes["delete.journaled"][0] == outcomes["delete.data-done"][0] == ["i1"]  # deletes finished
    for i, point in enumerate(("external.overlays-created", "ledger.recorded", "external.switched")):
        assert f"e{i}" not in outcomes[point][0]  # an offline external create rolls back, its NVRAM tag too
    assert outcomes["revert-external.stopped"] == (["i1", "x"], "x")  # the revert was finished


def test_snapshot_check_reports_nvram_tags_that_differ_from_the_snapshots(tmp_path, monkeypatch):
    monkeypatch.setenv("VIRTSNAP_QEMU_STATE_DIR", str(tmp_path / "state"))
    disk = tmp_path / "d.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "16M"], check=True)
    conn = virtsnap.open("qemu:///session")
    dom = conn.defineXML(domain("<firmware><feature enabled='no' name='secure-boot'/></firmware>", disk=(
        f"<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='{disk}'/>"
        "<target dev='vda' bus='virtio'/></disk>")))
    nvram = firmware.own_nvram(tmp_path / "state", UUID)
    s1 = dom.snapshotCreateXML("<domainsnapshot><name>s1</name></domainsnapshot>")
    assert [f for f in dom.snapshotCheck(0) if f.drift] == []
    subprocess.run(["qemu-img", "snapshot", "-d", "s1", "--image-opts", f"driver=qcow2,file.filename={nvram}"],
                   check=True)
    subprocess.run(["qemu-img", "snapshot", "-c", "stray", "--image-opts", f"driver=qcow2,file.filename={nvram}"],
                   check=True)
    found = {(f.kind, f.subject) for f in dom.snapshotCheck(virtsnap.VIR_DOMAIN_SNAPSHOT_CHECK_REPAIR) if f.drift}
    assert found == {("nvram-missing", "s1"), ("untracked-snapshot", "stray")}
    assert _image_tags(nvram) == ["stray"] and dom.snapshotListNames() == ["s1"]  # --repair changed neither
    with pytest.raises(virtsnap.libvirtError) as info:  # the revert is refused before anything changes
        dom.revertToSnapshot(s1)
    assert info.value.get_error_code() == virtsnap.VIR_ERR_OPERATION_INVALID and nvram in str(info.value)
