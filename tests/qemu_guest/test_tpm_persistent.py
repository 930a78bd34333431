"""<backend type='emulator' persistent_state='yes'>, as libvirt: undefine keeps the TPM's state (the TPM comes
back when a domain with the same uuid is defined again) and removes it only when asked (--tpm)."""

from __future__ import annotations

from pathlib import Path

import pytest

import virtsnap
from virtsnap.drivers.qemu import tpm

from .test_tpm import tpm_domain

pytestmark = pytest.mark.qemu


def test_persistent_state_is_kept_at_undefine_unless_removed_with_tpm(guest, workdir, conn):
    xml = tpm_domain(guest, workdir, "kept").replace("<backend type='emulator' version='2.0'",
                                                     "<backend type='emulator' version='2.0' persistent_state='yes'")
    assert "persistent_state='yes'" in xml
    dom = conn.defineXML(xml)
    uuid = dom.UUIDString()
    state = Path(tpm.state_path(Path(conn.driver.state_dir), uuid))
    dom.createWithFlags(virtsnap.VIR_DOMAIN_START_PAUSED)
    dom.destroy()
    made = (state / tpm.STATE_FILE).read_bytes()
    dom.undefine()  # no flag: kept
    assert (state / tpm.STATE_FILE).read_bytes() == made
    again = conn.defineXML(xml.replace("<name>kept</name>", f"<name>kept</name><uuid>{uuid}</uuid>"))
    again.createWithFlags(virtsnap.VIR_DOMAIN_START_PAUSED)
    again.destroy()
    assert [r.path for r in conn.driver.store.ledger(uuid) if r.purpose == tpm.PURPOSE] == [str(state)]
    again.undefineFlags(virtsnap.VIR_DOMAIN_UNDEFINE_TPM)
    assert not state.exists()
    assert conn.driver.store.ledger(uuid) == []
