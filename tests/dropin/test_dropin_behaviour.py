"""What libvirt-python programs rely on beyond the snapshot calls, each compared with python3-libvirt on
test:///default: versions, error reporting (handler, default stderr line, last error), handle lifetime
after close(), and lifecycle events with the FROM_SNAPSHOT details of a revert."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# One program, run by python3-libvirt and by virtsnap (as `libvirt`); it prints what a program would observe.
PROGRAM = r'''
import sys
import libvirt

out = {}
out["getVersion"] = libvirt.getVersion()
conn = libvirt.open("test:///default")
out["libVersion"] = conn.getLibVersion()
out["hvVersion"] = conn.getVersion()
out["uri"], out["type"], out["alive"] = conn.getURI(), conn.getType(), conn.isAlive()
out["info"] = conn.getInfo()
out["caps_start"] = conn.getCapabilities().splitlines()[:4]
dom = conn.lookupByName("test")
out["stats"] = [s for _, s in conn.domainListGetStats([dom], libvirt.VIR_DOMAIN_STATS_STATE)]

# errors: default line on stderr, then a handler, then the last error
try:
    conn.lookupByName("nope")
except libvirt.libvirtError as e:
    out["err"] = [e.get_error_code(), e.get_error_domain(), str(e)]
out["last"] = libvirt.virGetLastError()[:3]
seen = []
libvirt.registerErrorHandler(lambda ctx, err: seen.append([ctx, err[0], err[1], err[2]]), "ctx")
try:
    dom.snapshotLookupByName("nope")
except libvirt.libvirtError:
    pass
out["handler"] = seen
libvirt.virResetLastError()
out["after_reset"] = libvirt.virGetLastError()
libvirt.registerErrorHandler(None, None)

# events: lifecycle callbacks driven by the default loop, through a revert of a running snapshot
libvirt.virEventRegisterDefaultImpl()
events = []
cid = conn.domainEventRegisterAny(None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE,
                                  lambda c, d, ev, detail, opaque: events.append([d.name(), ev, detail, opaque]), "op")
snap = dom.snapshotCreateXML("<domainsnapshot><name>s1</name></domainsnapshot>")
dom.suspend()
dom.revertToSnapshot(snap)
dom.destroy()
dom.revertToSnapshot(snap, libvirt.VIR_DOMAIN_SNAPSHOT_REVERT_PAUSED)
done = []
libvirt.virEventAddTimeout(0, lambda timer, opaque: done.append(timer), None)
while not done:
    libvirt.virEventRunDefaultImpl()
out["events"] = events
conn.domainEventDeregisterAny(cid)

# lifetime: handles keep the connection alive after close()
out["close"] = conn.close()
out["after_close"] = [snap.getName(), snap.getDomain().name(), dom.state()]
try:
    conn.lookupByName("test")
except libvirt.libvirtError as e:
    out["closed_err"] = [e.get_error_code(), e.get_error_domain(), str(e)]
snap.delete()
del dom, snap
print(json.dumps(out))
'''


# `import libvirt` gives virtsnap itself, as `import virtsnap as libvirt` would.
SHIM = "import sys\nimport virtsnap\nsys.modules[__name__] = virtsnap\n"


def _run(python, shim):
    env = {"PATH": "/usr/bin:/bin"}
    if shim:
        env["PYTHONPATH"] = f"{shim}:{ROOT / 'src'}"
    done = subprocess.run([python, "-c", "import json\n" + PROGRAM], capture_output=True, text=True, env=env,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout), done.stderr


def test_same_observations_as_libvirt_python(tmp_path):
    (tmp_path / "libvirt.py").write_text(SHIM)
    expected, expected_err = _run("/usr/bin/python3", None)
    got, got_err = _run(sys.executable, tmp_path)
    for key in ("caps_start", "info"):  # the test driver's fixed host, as libvirt's
        assert got[key] == expected[key], key
    assert got == expected
    assert got_err == expected_err
    assert got_err.startswith("libvirt: Test Driver error : Domain not found")
    assert got["getVersion"] == 9_000_000
    assert [e[1:3] for e in got["events"]].count([5, 6]) >= 1  # STOPPED FROM_SNAPSHOT


def test_version_option():
    import virtsnap
    from virtsnap.cli.main import main

    done = subprocess.run([sys.executable, "-m", "virtsnap.cli.main", "--version"], capture_output=True, text=True)
    assert done.returncode == 0
    assert done.stdout.splitlines()[:2] == [f"Virtsnap command line tool of virtsnap {virtsnap.__version__}",
                                            "Implements the libvirt API of libvirt 9.0.0"]
    short = subprocess.run([sys.executable, "-m", "virtsnap.cli.main", "-v"], capture_output=True, text=True)
    assert short.stdout == virtsnap.__version__ + "\n"
    assert callable(main)


def test_program_raised_libvirt_error_is_libvirt_pythons(tmp_path):
    """libvirtError(defmsg) as programs raise it: the thread's last error, or none (getters return None)."""
    program = r'''
import libvirt
libvirt.registerErrorHandler(lambda ctx, err: None, None)
e = libvirt.libvirtError("my own failure")
print(str(e), e.get_error_code(), e.get_error_domain(), e.get_error_message(), e.err)
conn = libvirt.open("test:///default")
try:
    conn.lookupByName("nope")
except libvirt.libvirtError:
    pass
e = libvirt.libvirtError("wrapped")
print(str(e), e.get_error_code(), e.get_error_domain(), e.get_error_message())
libvirt.virResetLastError()
print(libvirt.libvirtError("again").get_error_code())
'''
    outs = []
    for python, shim in (("/usr/bin/python3", None), (sys.executable, "shim")):
        env = {"PATH": "/usr/bin:/bin"}
        if shim:
            (tmp_path / "libvirt.py").write_text(SHIM)
            env["PYTHONPATH"] = f"{tmp_path}:{ROOT / 'src'}"
        done = subprocess.run([python, "-c", program], capture_output=True, text=True, env=env, timeout=60)
        assert done.returncode == 0, done.stderr
        outs.append(done.stdout)
    assert outs[1] == outs[0]
    assert outs[0].splitlines()[0] == "my own failure None None None None"
