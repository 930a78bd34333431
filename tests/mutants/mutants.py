"""Planted bugs and the tests that must catch them: each mutant is applied to a temporary copy of the repository
(never to the working tree) and the named tests run against that copy; a mutant survives if they pass.

`python tests/mutants/mutants.py [ID ...]` runs them and prints the table (mutant, layer, killed by, seconds).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
COPY_IGNORE = shutil.ignore_patterns(".venv", ".git", "__pycache__", "*.egg-info", ".hypothesis", ".mypy_cache",
                                     ".ruff_cache", "bench", "demo", "fuzz", "build")


@dataclass(frozen=True)
class Mutant:
    id: str
    bug: str        # what the planted bug does, as a user would notice it
    path: str       # file under the repository
    old: str        # text that must occur exactly once
    new: str
    tests: tuple[str, ...]  # pytest node ids; any one failing kills the mutant
    layer: str      # fast (no guest, no simulator), vcsim (govmomi's simulator), guest (real QEMU TCG guest)


MUTANTS = (
    Mutant("qemu-revert-keeps-current",
           "QEMU: a revert to an internal snapshot does not make it current",
           "src/virtsnap/drivers/qemu/revert.py",
           "                ctx.store.put_domain(uuid, dom_def.name, moments.stored(defn.domain))\n"
           "            tree.set_current(moment)\n",
           "                ctx.store.put_domain(uuid, dom_def.name, moments.stored(defn.domain))\n"
           "            pass\n",
           ("tests/differential/test_differential.py::test_offline_qemu_tree_matches_libvirt[0]",
            "tests/unit/test_prop_tree.py::test_random_operation_sequences_on_offline_qemu"),
           "fast"),
    Mutant("qemu-create-links-roots",
           "QEMU: every new snapshot is linked as a root instead of a child of the current one",
           "src/virtsnap/drivers/qemu/context.py",
           'parent = tree.current if parent_name == "" else',
           'parent = None if parent_name == "" else',
           ("tests/differential/test_differential.py::test_offline_qemu_tree_matches_libvirt[0]",
            "tests/unit/test_prop_tree.py::test_random_operation_sequences_on_offline_qemu"),
           "fast"),
    Mutant("creation-time-early",
           "every snapshot is stamped two hours before it was taken",
           "src/virtsnap/conf/snapshot_xml.py",
           "        defn.creation_time = int(clock)\n",
           "        defn.creation_time = int(clock) - 7200\n",
           ("tests/differential/test_differential.py::test_sequence_matches_libvirt[0]",),
           "fast"),
    Mutant("schema-message-dropped",
           "CREATE_VALIDATE failures no longer say what in the XML broke the schema",
           "src/virtsnap/conf/validate.py",
           'f"Unable to validate doc against {path}\\n{messages}"',
           'f"Unable to validate doc against {path}\\n"',
           ("tests/differential/test_differential.py::test_sequence_matches_libvirt[7]",),
           "fast"),
    Mutant("leaves-group-drops-location",
           "LIST_LEAVES|LIST_NO_LEAVES makes the list ignore INTERNAL/EXTERNAL",
           "src/virtsnap/conf/tree.py",
           "        if location == SnapshotList.INTERNAL | SnapshotList.EXTERNAL:\n",
           "        if location == SnapshotList.INTERNAL | SnapshotList.EXTERNAL or (\n"
           "                fl & SnapshotList.LEAVES and fl & SnapshotList.NO_LEAVES):\n",
           ("tests/differential/test_differential.py::test_sequence_matches_libvirt[0]",),
           "fast"),
    Mutant("delete-root-orphans-children",
           "deleting a root snapshot leaves its children pointing at it instead of making them roots",
           "src/virtsnap/conf/tree.py",
           "        dest = target if target is not None else self._root\n",
           "        dest = target if target is not None else source\n",
           ("tests/unit/test_prop_tree.py::test_random_operation_sequences",),
           "fast"),
    Mutant("overlay-o-trunc",
           "an external snapshot's overlay is opened with O_TRUNC instead of O_EXCL: a file already at the path "
           "(even one that appears after the checks) is silently taken over",
           "src/virtsnap/drivers/qemu/external.py",
           "os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC",
           "os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC",
           ("tests/unit/test_ledger.py::test_an_existing_overlay_file_even_empty_is_refused_unless_reuse_ext",),
           "fast"),
    Mutant("esx-tree-all-roots",
           "ESX: the driver maps every vSphere snapshot as a root",
           "src/virtsnap/drivers/esx/tree.py",
           "tree.link(moment, by_moref[parent.snapshot._moId] if parent is not None else None)",
           "tree.link(moment, None)",
           ("tests/esx/test_esx_model.py::test_model_on_a_vsphere_vm",),
           "vcsim"),
    Mutant("vbox-no-current",
           "VirtualBox: the driver never reports the machine's current snapshot",
           "src/virtsnap/drivers/vbox/driver.py",
           "tree.set_current(by_uuid.get(listing.current_uuid))",
           "tree.set_current(None)",
           ("tests/vbox/test_model.py::test_model_on_a_virtualbox_machine",),
           "fast"),
)


def run(mutant: Mutant, timeout: float = 900) -> tuple[bool, list[str], float, str]:
    """(killed, failing node ids, seconds, pytest's output tail) for one mutant planted in a fresh copy."""
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="vs-mutant-") as tmp:
        copy = Path(tmp) / "repo"
        shutil.copytree(REPO, copy, ignore=COPY_IGNORE)
        target = copy / mutant.path
        text = target.read_text()
        if text.count(mutant.old) != 1:
            raise AssertionError(f"mutant {mutant.id} no longer applies: {mutant.old!r} occurs "
                                 f"{text.count(mutant.old)} times in {mutant.path}; update tests/mutants/mutants.py")
        target.write_text(text.replace(mutant.old, mutant.new))
        env = {k: v for k, v in os.environ.items() if k != "CI"}  # a skip must read as "survived", not as a failure
        env["PYTHONPATH"] = os.pathsep.join([str(copy / "src"), *filter(None, [env.get("PYTHONPATH")])])
        # The first failure decides: no shrinking of hypothesis examples (tests/conftest.py's "mutant" profile).
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-rf",
                               "--hypothesis-profile=mutant", *mutant.tests], cwd=copy, env=env, capture_output=True, text=True, timeout=timeout,
                              check=False)
    failed = re.findall(r"^FAILED (\S+)", proc.stdout, re.M)
    killed = proc.returncode == 1 and any(f.split("::")[0] == t.split("::")[0] for f in failed for t in mutant.tests)
    return killed, failed, time.monotonic() - start, (proc.stdout + proc.stderr)[-3000:]


def main(ids: list[str]) -> int:
    chosen = [m for m in MUTANTS if not ids or m.id in ids]
    survived = 0
    print(f"{'mutant':30} {'layer':6} {'result':8} {'s':>6}  killed by")
    for mutant in chosen:
        killed, failed, seconds, _ = run(mutant)
        survived += not killed
        print(f"{mutant.id:30} {mutant.layer:6} {'killed' if killed else 'SURVIVED':8} {seconds:6.1f}  "
              f"{', '.join(failed) or '-'}", flush=True)
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
