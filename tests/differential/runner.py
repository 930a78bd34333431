#!/usr/bin/env python3
"""Execute a JSON list of snapshot-API operations against one implementation.

Usage::

    python runner.py --impl libvirt  < ops.json > results.json
    python runner.py --impl virtsnap < ops.json > results.json

The same file runs under Debian's /usr/bin/python3 (which has the real
libvirt-python bindings) and under the project's venv interpreter (which has
virtsnap), so it must stay free of third-party imports and of syntax newer
than Python 3.11.

Every operation targets domain "test" of ``test:///default``.  All operations
run in ONE read-write connection (the test driver forgets its state when the
last connection closes); a second, read-only connection to the same URI is
opened beside it so that operations marked ``"ro": true`` exercise the
read-only checks against the same in-memory state.

Each result is exactly one of::

    {"ok": value}                 value normalised: snapshot handle -> name,
                                  list of handles -> list of names (order kept
                                  as returned), XML -> str, ints/lists as is
    {"err": [code, domain, msg]}  a libvirtError
    {"exc": [type, msg]}          any other Python exception (e.g. a method
                                  missing from virtsnap); only the type is
                                  compared, the message is for the reader

Composite operations add ``"step"`` to an error result saying which call
failed.  Flags are given as a list whose items are libvirt constant names
(resolved with getattr on the imported module, so virtsnap's own values are
used on its side) or plain ints (for deliberately undefined bits); they are
OR-ed together.  Omitting "flags" calls the method without the argument so
that default arguments are exercised too.

Operation vocabulary (key "op"), see gen.py for how they are produced:

  domain level   constants, snapshotCreateXML, redefine_from,
                 revertToSnapshot, snapshotCurrent, hasCurrentSnapshot,
                 snapshotLookupByName, snapshotNum, snapshotListNames,
                 listAllSnapshots, state, info, isActive, ID, XMLDesc,
                 suspend, resume, destroy, create
  snapshot level getName, getParent, isCurrent, hasMetadata, numChildren,
                 listChildrenNames, listAllChildren, getXMLDesc, delete
                 (key "snap" names the snapshot; key "via" is "cache" to
                 reuse the last handle seen for that name, possibly stale,
                 or "lookup" to look it up afresh first)
"""

import argparse
import json
import re
import sys
import time

URI = "test:///default"
DOMAIN = "test"

# Constants whose values are reported by the "constants" op so that a wrong
# value in virtsnap shows up as one clear difference instead of as a cascade
# of behavioural ones.
CONSTANT_NAMES = [
    "VIR_DOMAIN_SNAPSHOT_CREATE_REDEFINE",
    "VIR_DOMAIN_SNAPSHOT_CREATE_CURRENT",
    "VIR_DOMAIN_SNAPSHOT_CREATE_NO_METADATA",
    "VIR_DOMAIN_SNAPSHOT_CREATE_HALT",
    "VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY",
    "VIR_DOMAIN_SNAPSHOT_CREATE_REUSE_EXT",
    "VIR_DOMAIN_SNAPSHOT_CREATE_QUIESCE",
    "VIR_DOMAIN_SNAPSHOT_CREATE_ATOMIC",
    "VIR_DOMAIN_SNAPSHOT_CREATE_LIVE",
    "VIR_DOMAIN_SNAPSHOT_CREATE_VALIDATE",
    "VIR_DOMAIN_SNAPSHOT_LIST_ROOTS",
    "VIR_DOMAIN_SNAPSHOT_LIST_DESCENDANTS",
    "VIR_DOMAIN_SNAPSHOT_LIST_LEAVES",
    "VIR_DOMAIN_SNAPSHOT_LIST_NO_LEAVES",
    "VIR_DOMAIN_SNAPSHOT_LIST_METADATA",
    "VIR_DOMAIN_SNAPSHOT_LIST_NO_METADATA",
    "VIR_DOMAIN_SNAPSHOT_LIST_INACTIVE",
    "VIR_DOMAIN_SNAPSHOT_LIST_ACTIVE",
    "VIR_DOMAIN_SNAPSHOT_LIST_DISK_ONLY",
    "VIR_DOMAIN_SNAPSHOT_LIST_INTERNAL",
    "VIR_DOMAIN_SNAPSHOT_LIST_EXTERNAL",
    "VIR_DOMAIN_SNAPSHOT_LIST_TOPOLOGICAL",
    "VIR_DOMAIN_SNAPSHOT_REVERT_RUNNING",
    "VIR_DOMAIN_SNAPSHOT_REVERT_PAUSED",
    "VIR_DOMAIN_SNAPSHOT_REVERT_FORCE",
    "VIR_DOMAIN_SNAPSHOT_REVERT_RESET_NVRAM",
    "VIR_DOMAIN_SNAPSHOT_DELETE_CHILDREN",
    "VIR_DOMAIN_SNAPSHOT_DELETE_METADATA_ONLY",
    "VIR_DOMAIN_SNAPSHOT_DELETE_CHILDREN_ONLY",
    "VIR_DOMAIN_SNAPSHOT_XML_SECURE",
    "VIR_DOMAIN_NOSTATE",
    "VIR_DOMAIN_RUNNING",
    "VIR_DOMAIN_BLOCKED",
    "VIR_DOMAIN_PAUSED",
    "VIR_DOMAIN_SHUTDOWN",
    "VIR_DOMAIN_SHUTOFF",
    "VIR_DOMAIN_CRASHED",
    "VIR_DOMAIN_PMSUSPENDED",
    "VIR_ERR_OK",
    "VIR_ERR_INTERNAL_ERROR",
    "VIR_ERR_NO_SUPPORT",
    "VIR_ERR_INVALID_ARG",
    "VIR_ERR_OPERATION_FAILED",
    "VIR_ERR_XML_ERROR",
    "VIR_ERR_OPERATION_DENIED",
    "VIR_ERR_NO_DOMAIN",
    "VIR_ERR_OPERATION_INVALID",
    "VIR_ERR_CONFIG_UNSUPPORTED",
    "VIR_ERR_NO_DOMAIN_SNAPSHOT",
    "VIR_ERR_SNAPSHOT_REVERT_RISKY",
    "VIR_ERR_XML_DETAIL",
    "VIR_FROM_NONE",
    "VIR_FROM_DOMAIN",
    "VIR_FROM_TEST",
    "VIR_FROM_DOMAIN_SNAPSHOT",
]

SNAPSHOT_METHODS = {
    "getName", "getParent", "isCurrent", "hasMetadata", "numChildren",
    "listChildrenNames", "listAllChildren", "getXMLDesc", "delete",
}


def load_impl(name):
    """Import the implementation under test under the name the ops expect."""
    if name == "libvirt":
        import libvirt as module
    elif name == "virtsnap":
        import virtsnap as module
    else:
        raise SystemExit("unknown --impl %r" % name)
    return module


def offline_qemu_domain(workdir):
    """Define domain "test" on qemu:///session over a fresh qcow2 made by qemu-img; it is never started.

    The state directory lives in workdir, so the run sees no other domain.  Returns the URI to open."""
    import os
    import subprocess

    os.environ["VIRTSNAP_QEMU_STATE_DIR"] = os.path.join(workdir, "state")
    disk = os.path.join(workdir, "test.qcow2")
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", disk, "16M"], check=True)
    import virtsnap

    conn = virtsnap.open("qemu:///session")
    conn.defineXML(
        "<domain type='qemu'><name>%s</name><memory unit='MiB'>64</memory><os><type>hvm</type></os>"
        "<devices><disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
        "<source file='%s'/><target dev='vda' bus='virtio'/></disk></devices></domain>" % (DOMAIN, disk))
    conn.close()
    return "qemu:///session"


class Runner:
    """Holds the connections and the handle cache for one op sequence."""

    def __init__(self, libvirt, uri=URI, shut_off=False):
        self.lv = libvirt
        # libvirt-python's default error handler prints every error to
        # stderr; silence it so stderr only carries real runner problems.
        # Guarded because it is not part of the API surface compared here.
        if hasattr(libvirt, "registerErrorHandler"):
            libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
        self.conn = libvirt.open(uri)
        self.ro_conn = libvirt.openReadOnly(uri)
        self.dom = self.conn.lookupByName(DOMAIN)
        self.ro_dom = self.ro_conn.lookupByName(DOMAIN)
        if shut_off and self.dom.isActive():
            # The tree profile compares with a guest that never runs: start the test driver's domain shut off too.
            self.dom.destroy()
        # (ro, name) -> last snapshot handle seen with that name.  Handles
        # outlive the snapshot they name, which is what "via": "cache"
        # exercises (libvirt handles are just domain + name).
        self.cache = {}
        # Highest Unix second at which an unnamed snapshot may have been
        # named; see wait_new_second().
        self.last_unnamed_second = 0

    # -- helpers ---------------------------------------------------------

    def flags(self, spec):
        """OR together a flag list of constant names and/or ints."""
        value = 0
        for item in spec:
            value |= getattr(self.lv, item) if isinstance(item, str) else int(item)
        return value

    def call(self, func, op, *args):
        """Call func(*args[, flags]) honouring an optional "flags" key."""
        if "flags" in op:
            return func(*args, self.flags(op["flags"]))
        return func(*args)

    def remember(self, ro, snap):
        """Cache a snapshot handle and return its name for the result."""
        name = snap.getName()
        self.cache[(ro, name)] = snap
        return name

    def remember_all(self, ro, snaps):
        """Cache a list of handles; return their names in the given order."""
        return [self.remember(ro, s) for s in snaps]

    def wait_new_second(self):
        """Make sure an unnamed snapshot cannot collide with the previous one.

        libvirt names an unnamed snapshot after its creation time in whole
        Unix seconds, so two unnamed creates within one second fail with
        "domain moment N already exists".  That would make the outcome depend
        on timing, which differs between implementations, so wait until the
        clock has moved past the second of the previous unnamed create.
        """
        while int(time.time()) <= self.last_unnamed_second:
            time.sleep(0.05)

    def snapshot(self, op, ro, dom):
        """Return the snapshot handle an op refers to (may be stale)."""
        name = op["snap"]
        if op.get("via", "cache") == "cache" and (ro, name) in self.cache:
            return self.cache[(ro, name)]
        snap = dom.snapshotLookupByName(name)
        self.cache[(ro, name)] = snap
        return snap

    # -- dispatch --------------------------------------------------------

    def run_op(self, op):
        """Execute one op and return its raw (un-wrapped) value."""
        ro = bool(op.get("ro"))
        dom = self.ro_dom if ro else self.dom
        kind = op["op"]

        if kind == "constants":
            return {n: getattr(self.lv, n, None) for n in CONSTANT_NAMES}

        if kind == "snapshotCreateXML":
            if op.get("unnamed"):
                self.wait_new_second()
            try:
                start = int(time.time())
                snap = self.call(dom.snapshotCreateXML, op, op["xml"])
                end = int(time.time())
                name = self.remember(ro, snap)
                if not self.flags(op.get("flags", [])) & getattr(self.lv, "VIR_DOMAIN_SNAPSHOT_CREATE_REDEFINE"):
                    # The stamp is masked in every XML result; checked here instead, against the call's window.
                    stamp = re.search(r"<creationTime>(\d+)</creationTime>", snap.getXMLDesc())
                    self.time_in_window = bool(stamp) and start <= int(stamp.group(1)) <= end
                return name
            finally:
                if op.get("unnamed"):
                    self.last_unnamed_second = int(time.time())

        if kind == "redefine_from":
            return self.redefine_from(op, ro, dom)

        if kind == "revertToSnapshot":
            snap = self.step("lookup", self.snapshot, op, ro, dom)
            return self.call(dom.revertToSnapshot, op, snap)

        if kind == "snapshotCurrent":
            return self.remember(ro, self.call(dom.snapshotCurrent, op))

        if kind == "snapshotLookupByName":
            return self.remember(ro, self.call(dom.snapshotLookupByName, op, op["name"]))

        if kind == "listAllSnapshots":
            return self.remember_all(ro, self.call(dom.listAllSnapshots, op))

        if kind in ("hasCurrentSnapshot", "snapshotNum", "snapshotListNames",
                    "XMLDesc"):
            return self.call(getattr(dom, kind), op)

        if kind in ("state", "info", "isActive", "ID", "suspend", "resume",
                    "destroy", "create"):
            # state() takes optional flags in libvirt-python; the others none.
            return self.call(getattr(dom, kind), op)

        if kind in SNAPSHOT_METHODS:
            snap = self.step("lookup", self.snapshot, op, ro, dom)
            value = self.call(getattr(snap, kind), op)
            if kind == "getParent":
                return self.remember(ro, value)
            if kind == "listAllChildren":
                return self.remember_all(ro, value)
            return value

        raise ValueError("unknown op %r" % kind)

    def step(self, label, func, *args):
        """Run func(*args); tag a failure with the name of the step."""
        try:
            return func(*args)
        except Exception as exc:  # noqa: BLE001 - re-raised with a tag
            exc.virtsnap_step = label
            raise

    def redefine_from(self, op, ro, dom):
        """Redefine a snapshot from the XML of an existing one.

        Steps: getXMLDesc(xml_flags) of op["snap"]; optionally delete it
        (op["delete_flags"] present); apply op["subs"], a list of
        [regex, replacement(, max count)] edits (rename, re-parent, change
        state, drop elements...); then snapshotCreateXML(xml, op["flags"]).
        The XML is edited identically on both sides because each side edits
        its own getXMLDesc output with the same regexes.
        """
        src = self.step("lookup", self.snapshot, op, ro, dom)
        if "xml_flags" in op:
            xml = self.step("getXMLDesc", src.getXMLDesc, self.flags(op["xml_flags"]))
        else:
            xml = self.step("getXMLDesc", src.getXMLDesc)
        if "delete_flags" in op:
            self.step("delete", src.delete, self.flags(op["delete_flags"]))
        for sub in op.get("subs", []):
            pattern, repl = sub[0], sub[1]
            count = sub[2] if len(sub) > 2 else 0
            xml = re.sub(pattern, repl, xml, count=count, flags=re.S)
        snap = self.step("create", self.call, dom.snapshotCreateXML, op, xml)
        return self.remember(ro, snap)

    def execute(self, op):
        """Run one op and wrap its outcome as an ok/err/exc result dict."""
        self.time_in_window = None
        try:
            result = {"ok": self.run_op(op)}
            if self.time_in_window is not None:
                result["time_in_window"] = self.time_in_window
            return result
        except Exception as exc:  # noqa: BLE001 - recorded, then compared
            if isinstance(exc, self.lv.libvirtError):
                result = {"err": [exc.get_error_code(), exc.get_error_domain(),
                                  exc.get_error_message()]}
            else:
                result = {"exc": [type(exc).__name__, str(exc)]}
            step = getattr(exc, "virtsnap_step", None)
            if step:
                result["step"] = step
            return result


def main(argv=None):
    """Read ops from stdin, run them, write the results to stdout."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--impl", required=True, choices=["libvirt", "virtsnap"])
    parser.add_argument("--target", default="test",
                        choices=["test", "test-shutoff", "qemu-offline", "libvirt+test"],
                        help="test:///default as it starts, its domain shut off first, (virtsnap only) "
                             "an offline QEMU domain over a real qcow2 image, or (virtsnap only) "
                             "libvirt's own test driver through virtsnap's libvirt+ driver")
    args = parser.parse_args(argv)
    ops = json.load(sys.stdin)
    if args.target == "qemu-offline":
        if args.impl != "virtsnap":
            raise SystemExit("--target qemu-offline runs virtsnap only")
        import tempfile

        with tempfile.TemporaryDirectory(prefix="vs-diff-") as workdir:
            runner = Runner(load_impl(args.impl), offline_qemu_domain(workdir))
            results = [runner.execute(op) for op in ops]
            runner.conn.close()
            runner.ro_conn.close()
    elif args.target == "libvirt+test":
        if args.impl != "virtsnap":
            raise SystemExit("--target libvirt+test runs virtsnap only")
        runner = Runner(load_impl(args.impl), "libvirt+" + URI)
        results = [runner.execute(op) for op in ops]
    else:
        runner = Runner(load_impl(args.impl), shut_off=args.target == "test-shutoff")
        results = [runner.execute(op) for op in ops]
    # One result per line keeps large outputs diffable by eye.
    sys.stdout.write("[\n" + ",\n".join(json.dumps(r, sort_keys=True) for r in results)
                     + "\n]\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
