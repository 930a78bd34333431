"""The DAC hand-over registry on real files (run as root, as CI does): a file two domains share goes back to its
owner only after both let go, a file replaced or re-owned meanwhile is left alone, and the userfaultfd check
names the host setting whenever it refuses."""

from __future__ import annotations

import os
import pwd
from pathlib import Path

import pytest

import virtsnap
from virtsnap.drivers.qemu import confine


@pytest.fixture
def nobody() -> confine.Identity:
    pw = pwd.getpwnam("nobody")
    return confine.resolve(f"+{pw.pw_uid}:+{pw.pw_gid}")


def owner(path: Path) -> tuple[int, int, int]:
    st = os.stat(path)
    return st.st_uid, st.st_gid, st.st_mode & 0o7777


def test_shared_file_goes_back_after_the_last_holder(tmp_path, nobody):
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    base, own = tmp_path / "base.qcow2", tmp_path / "own.qcow2"
    for path in (base, own):
        path.write_bytes(b"x")
        os.chmod(path, 0o640)
    confine.hand_over(state, "dom-a", nobody, [str(base), str(own)])
    confine.hand_over(state, "dom-b", nobody, [str(base)])
    assert owner(base)[:2] == owner(own)[:2] == (nobody.uid, nobody.gid)
    assert confine.holds(state, "dom-a") and confine.holds(state, "dom-b")
    confine.hand_back(state, "dom-a")
    assert owner(own) == (0, 0, 0o640)
    assert owner(base)[:2] == (nobody.uid, nobody.gid)  # dom-b still runs on it
    confine.hand_back(state, "dom-b")
    assert owner(base) == (0, 0, 0o640)
    assert not confine.holds(state, "dom-a") and not confine.holds(state, "dom-b")


def test_a_file_changed_meanwhile_is_not_given_back(tmp_path, nobody):
    """Re-owned by someone meanwhile: kept. Replaced by a symlink to another file: that file is not touched."""
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    image, other, victim = tmp_path / "image", tmp_path / "other", tmp_path / "victim"
    for path in (image, other, victim):
        path.write_bytes(b"x")
    confine.hand_over(state, "dom", nobody, [str(image), str(other)])
    os.chown(other, 1234, 1234)  # the administrator gave it to someone else while the domain ran
    image.unlink()
    os.chown(victim, nobody.uid, nobody.gid)
    os.chmod(victim, 0o666)
    image.symlink_to(victim)
    confine.hand_back(state, "dom")
    assert owner(other)[:2] == (1234, 1234)
    assert owner(victim) == (nobody.uid, nobody.gid, 0o666)


def test_root_and_unknown_users_are_refused():
    for label in ("+0:+0", "root:root", "no-such-user-here:x"):
        with pytest.raises(virtsnap.libvirtError) as exc:
            confine.resolve(label)
        assert exc.value.get_error_code() == virtsnap.VIR_ERR_CONFIG_UNSUPPORTED


def test_userfaultfd_refusal_names_the_host_setting(nobody):
    allowed = Path("/proc/sys/vm/unprivileged_userfaultfd").read_text().strip() == "1"
    for version in ((7, 2, 22), (8, 1, 0)):
        reason = confine.userfaultfd_refusal(nobody, version)
        if allowed:
            assert reason is None
        else:
            assert reason is not None and "vm.unprivileged_userfaultfd=1" in reason, version
            assert ("/dev/userfaultfd" in reason) if version >= (8, 1) else "does not use" in reason
