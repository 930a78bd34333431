"""virtsnap has libvirt-python 9.0's whole surface: the same VIR_* constants with the same values, the same
classes and module functions, every method with libvirt-python's parameter names and defaults; what it does
not implement fails with libvirt's VIR_ERR_NO_SUPPORT, never AttributeError."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

import virtsnap

ROOT = Path(__file__).resolve().parents[2]
DUMP = Path(__file__).with_name("surface_dump.py")
# What virtsnap adds to libvirt-python's surface: module names listed here, constants that virtsnap's flag
# enumerations declare, and methods whose docstring says "virtsnap extension" (the docs list them).
EXTENSIONS = {
    "constants": {"VIR_DOMAIN_QEMU_AGENT_COMMAND_BLOCK", "VIR_DOMAIN_QEMU_AGENT_COMMAND_DEFAULT"},  # libvirt_qemu's
    "functions": {"qemuAgentCommand"},
    "classes": {"ErrorCode", "ErrorDomain"},
}


def _declared_extensions():
    from virtsnap import flags

    return set(flags.exported_constants())


def _is_extension(cls, method):
    doc = getattr(getattr(virtsnap, cls), method).__doc__ or ""
    return "virtsnap extension" in doc


def _dump(python, module):
    out = subprocess.run([python, str(DUMP), module], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"})
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def surfaces():
    return _dump("/usr/bin/python3", "libvirt"), _dump(sys.executable, "virtsnap")


def test_generated_surface_is_up_to_date():
    """Re-running the generator over libvirt-api.xml and python3-libvirt gives the committed surface.py."""
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_libvirt_surface.py"), "--check"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_constants_equal(surfaces):
    libvirt, ours = surfaces
    assert len(libvirt["constants"]) > 1100
    missing = sorted(set(libvirt["constants"]) - set(ours["constants"]))
    extra = sorted(set(ours["constants"]) - set(libvirt["constants"]) - EXTENSIONS["constants"]
                   - _declared_extensions())
    wrong = sorted(n for n, v in libvirt["constants"].items() if n in ours["constants"] and ours["constants"][n] != v)
    assert (missing, extra, wrong) == ([], [], [])


def test_module_functions_and_classes_equal(surfaces):
    libvirt, ours = surfaces
    assert set(ours["functions"]) - EXTENSIONS["functions"] == set(libvirt["functions"])
    assert set(ours["classes"]) - EXTENSIONS["classes"] == set(libvirt["classes"])
    for name, params in libvirt["functions"].items():
        assert ours["functions"][name] == params, name


def test_every_method_with_libvirts_signature(surfaces):
    libvirt, ours = surfaces
    problems = []
    for cls, methods in libvirt["classes"].items():
        mine = ours["classes"][cls]
        extra = {m for m in set(mine) - set(methods) if not _is_extension(cls, m)}
        if extra:
            problems.append(f"{cls} has extra methods {sorted(extra)}")
        for method, params in methods.items():
            if method not in mine:
                problems.append(f"{cls}.{method} is missing")
            elif mine[method] != params:
                problems.append(f"{cls}.{method}{mine[method]} != libvirt's {params}")
    assert problems == []


def test_libvirt_qemu_equal():
    libvirt_qemu, ours = _dump("/usr/bin/python3", "libvirt_qemu"), _dump(sys.executable, "virtsnap.libvirt_qemu")
    assert ours == libvirt_qemu
    assert "qemuAgentCommand" in ours["functions"]


def test_unimplemented_call_is_libvirts_no_support_error():
    messages = []
    virtsnap.registerErrorHandler(lambda ctx, err: messages.append((ctx, err[0], err[1], err[2])), "ctx")
    try:
        with virtsnap.open("test:///default") as conn:
            dom = conn.lookupByName("test")
            with pytest.raises(virtsnap.libvirtError) as info:
                dom.blockCommit("vda", None, None)
            with pytest.raises(virtsnap.libvirtError) as net:
                conn.networkLookupByName("default")
    finally:
        virtsnap.registerErrorHandler(None, None)
    assert (info.value.get_error_code(), info.value.get_error_domain(), str(info.value)) == (
        virtsnap.VIR_ERR_NO_SUPPORT, virtsnap.VIR_FROM_DOMAIN,
        "this function is not supported by the connection driver: virDomainBlockCommit")
    assert (net.value.get_error_code(), net.value.get_error_domain()) == (virtsnap.VIR_ERR_NO_SUPPORT,
                                                                          virtsnap.VIR_FROM_NETWORK)
    assert messages[0] == ("ctx", 3, 20, "this function is not supported by the connection driver: "
                                         "virDomainBlockCommit")
    assert len(messages) == 2


# What a fresh program meets first: the handles' unimplemented methods are made at the first name a class lacks
# (surface.py), whichever way the program reaches them.
FIRST_REACH = {
    "an instance's method": "print(dom.blockCommit.__qualname__); dom.blockCommit('vda', None, None)",
    "the class's method": "print(virtsnap.virDomain.blockCommit.__qualname__); dom.blockCommit('vda', None, None)",
    "dir() of an instance": "assert 'blockCommit' in dir(dom) and 'blockCommit' in dir(conn.listAllDomains()[0])",
    "dir() of the class": "assert 'blockCommit' in dir(virtsnap.virDomain)",
    "hasattr": "assert hasattr(dom, 'blockCommit') and not hasattr(dom, 'blockComit')",
    "a missing name": "dom.blockComit",
}


@pytest.mark.parametrize("way", FIRST_REACH)
def test_unimplemented_methods_made_at_first_reach(way):
    program = ("import sys, virtsnap\nconn = virtsnap.open('test:///default'); dom = conn.lookupByName('test')\n"
               "assert 'virtsnap.surface_more' not in sys.modules\n" + FIRST_REACH[way])
    proc = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                          env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"})
    last = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else ""
    if way in ("an instance's method", "the class's method"):
        assert proc.stdout.strip() == "virDomain.blockCommit"
        assert last.endswith("libvirtError: this function is not supported by the connection driver: "
                             "virDomainBlockCommit"), proc.stderr
    elif way == "a missing name":
        assert last.startswith("AttributeError: 'virDomain' object has no attribute 'blockComit'"), proc.stderr
    else:
        assert proc.returncode == 0, proc.stderr
