"""virDomain.snapshotCheck (virtsnap extension) through the API and the CLI on the test driver: flags are
checked like libvirt's, a read-only connection cannot repair, and drivers without own metadata say so."""

import json
import subprocess
import sys

import pytest

import virtsnap
from virtsnap import VIR_DOMAIN_SNAPSHOT_CHECK_REPAIR as REPAIR


def test_test_driver_has_no_drift_to_report():
    conn = virtsnap.open("test:///default")
    dom = conn.lookupByName("test")
    dom.snapshotCreateXML("<domainsnapshot><name>check-a</name></domainsnapshot>")
    try:
        assert dom.snapshotCheck(0) == [] and dom.snapshotCheck(REPAIR) == []
    finally:
        conn.close()  # test:///default lives while a connection of the process is open: leave it as found


@pytest.mark.parametrize("flags", [2, 1 << 31, -1])
def test_unknown_flags_are_refused(flags):
    conn = virtsnap.open("test:///default")
    dom = conn.lookupByName("test")
    with pytest.raises(virtsnap.libvirtError) as exc:
        dom.snapshotCheck(flags)
    conn.close()
    assert exc.value.get_error_code() == virtsnap.VIR_ERR_INVALID_ARG
    assert "virDomainSnapshotCheck" in exc.value.get_error_message()


def test_read_only_connection_may_check_but_not_repair():
    conn = virtsnap.openReadOnly("test:///default")
    dom = conn.lookupByName("test")
    assert dom.snapshotCheck(0) == []
    with pytest.raises(virtsnap.libvirtError) as exc:
        dom.snapshotCheck(REPAIR)
    conn.close()
    assert exc.value.get_error_code() == virtsnap.VIR_ERR_OPERATION_DENIED


def test_cli_prints_agreement_and_json():
    run = [sys.executable, "-m", "virtsnap", "-c", "test:///default"]
    out = subprocess.run([*run, "snapshot-check", "test"], capture_output=True, text=True)
    assert out.returncode == 0 and "agree" in out.stdout
    out = subprocess.run([*run, "snapshot-check", "test", "--json"], capture_output=True, text=True)
    assert out.returncode == 0 and json.loads(out.stdout) == {"domain": "test", "drift": False, "findings": []}
    out = subprocess.run([*run, "snapshot-check", "nosuch"], capture_output=True, text=True)
    assert out.returncode == 1 and out.stderr.startswith("error:") and "Traceback" not in out.stderr
