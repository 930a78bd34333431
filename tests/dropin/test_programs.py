"""Open-source libvirt-python programs, fetched from PyPI at test setup (never copied into this repository),
run on test:///default twice: with python3-libvirt and with virtsnap as `libvirt` (a shim module first on
sys.path; their source is not touched). Output, errors and exit codes must be equal.

- libvirt-python 9.0.0's own unit tests for snapshots and connections (its sdist's tests/)
- libvirt-python 9.0.0's examples/topology.py (parses getCapabilities)
- virtbulk 0.0.3, a CLI that takes snapshots of the domains a glob matches
- virtomate 0.1.2, a scripting CLI (domain-list, guest-ping; it imports libvirt_qemu too)
"""

import os
import re
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "virtsnap" / "programs"
DIST = Path("/usr/lib/python3/dist-packages")
PROGRAMS = {"libvirt-python": "9.0.0", "virtbulk": "0.0.3", "virtomate": "0.1.2"}


def _fetch(name, version):
    """The unpacked distribution, downloaded once into the cache (keyed by name and version)."""
    home = CACHE / f"{name}-{version}"
    tree = home / "tree"
    if not tree.exists():
        dl = home / "dl"
        kind = "--no-binary=:all:" if name == "libvirt-python" else "--only-binary=:all:"
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", kind, "-d", str(dl),
                        f"{name}=={version}"], check=True, capture_output=True, timeout=300)
        (archive,) = dl.iterdir()
        partial = home / "partial"
        if archive.suffix == ".whl":
            with zipfile.ZipFile(archive) as zf:
                zf.extractall(partial)
        else:
            with tarfile.open(archive) as tf:
                tf.extractall(partial, filter="data")
            (partial,) = [partial / p for p in os.listdir(partial)] or [partial]
        partial.rename(tree)
    return tree


@pytest.fixture(scope="module")
def sides(tmp_path_factory):
    """Two directories to put first on sys.path: python3-libvirt's modules, or shims that are virtsnap."""
    real, ours = tmp_path_factory.mktemp("libvirt"), tmp_path_factory.mktemp("virtsnap")
    for pattern in ("libvirt.py", "libvirt_qemu.py", "libvirtmod.cpython-*.so", "libvirtmod_qemu.cpython-*.so"):
        for path in DIST.glob(pattern):
            (real / path.name).symlink_to(path)
    (ours / "libvirt.py").write_text("import sys\nimport virtsnap\nsys.modules[__name__] = virtsnap\n")
    (ours / "libvirt_qemu.py").write_text(
        "import sys\nimport virtsnap.libvirt_qemu\nsys.modules[__name__] = virtsnap.libvirt_qemu\n")
    return {"libvirt": real, "virtsnap": ours}


def _run(side, program_dir, argv, cwd, home):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "COLUMNS": "100", "LIBVIRT_DEFAULT_URI": "test:///default",
           "PYTHONPATH": os.pathsep.join([str(side), str(program_dir)])}
    done = subprocess.run([sys.executable, *argv], capture_output=True, text=True, env=env, cwd=cwd, timeout=120)
    return done.returncode, done.stdout, done.stderr


def _both(sides, program_dir, argv, tmp_path, mask=()):
    results = []
    for name in ("libvirt", "virtsnap"):
        home = tmp_path / name
        home.mkdir()
        rc, out, err = _run(sides[name], program_dir, argv, program_dir, home)
        for pattern, repl in mask:
            out, err = re.sub(pattern, repl, out), re.sub(pattern, repl, err)
        results.append((rc, out, err))
    assert results[1] == results[0]
    return results[0]


def test_libvirt_python_own_tests(sides, tmp_path):
    tree = _fetch("libvirt-python", PROGRAMS["libvirt-python"])
    rc, out, err = _both(sides, tree, ["-m", "unittest", "-v", "tests.test_domain_snapshot",
                                       "tests.test_conn.TestLibvirtConn"], tmp_path,
                         mask=[(r"Ran (\d+) tests? in [\d.]+s", r"Ran \1 tests")])
    assert rc == 0 and "testSnapCreate" in err and "Ran 2 tests" in err


def test_libvirt_python_topology_example(sides, tmp_path):
    tree = _fetch("libvirt-python", PROGRAMS["libvirt-python"])
    rc, out, _ = _both(sides, tree, [str(tree / "examples" / "topology.py")], tmp_path)
    assert rc == 0 and "NUMA nodes: 2" in out


# Each CLI invocation opens and closes its own connection; one kept open carries test:///default's state
# from command to command, as the program's users would see on a real host.
VIRTBULK = r'''
import sys
import libvirt
keep = libvirt.open("test:///default")
from virtbulk.entrypoint import run_cli
for argv in (["list", "*"], ["-f", "plain", "take-snapshot", "te*"], ["-f", "plain", "pause", "test"],
             ["-f", "plain", "state", "*"], ["-f", "plain", "list", "*"], ["-f", "plain", "take-snapshot", "nomatch"]):
    sys.argv = ["virtbulk", "-c", "test:///default", *argv]
    try:
        run_cli()
    except SystemExit as exc:
        print("exit", exc.code)
for snap in keep.lookupByName("test").listAllSnapshots():
    print(snap.getName().endswith("-VirtBulk"), snap.isCurrent(), snap.getXMLDesc().count("<state>running</state>"))
'''


def test_virtbulk(sides, tmp_path):
    tree = _fetch("virtbulk", PROGRAMS["virtbulk"])
    rc, out, _ = _both(sides, tree, ["-c", VIRTBULK], tmp_path,
                       mask=[(r"\d\d\.\d\d\.\d{4}_\d\d:\d\d:\d\d", "TIME")])
    assert rc == 0 and 'take snapshot "TIME-VirtBulk" on RUNNING' in out and "True 1 1" in out


VIRTOMATE = r'''
import sys
import libvirt
keep = libvirt.open("test:///default")
from virtomate import main
for argv in (["domain-list"], ["-p", "domain-list"], ["guest-ping", "test"], ["domain-list", "--bogus"]):
    sys.argv = ["virtomate", "-c", "test:///default", *argv]
    try:
        print("rc", main())
    except SystemExit as exc:
        print("exit", exc.code)
'''


def test_virtomate(sides, tmp_path):
    tree = _fetch("virtomate", PROGRAMS["virtomate"])
    rc, out, _ = _both(sides, tree, ["-c", VIRTOMATE], tmp_path)
    assert rc == 0 and '"name":"test"' in out and "rc 125" in out
