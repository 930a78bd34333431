#!/usr/bin/env python3
"""Seeded generator of random-but-meaningful snapshot API op sequences.

``python gen.py --seed 3 --ops 300`` prints a JSON op list for runner.py.

The generator keeps an approximate model of libvirt's test driver (which
snapshots exist, their parents, the current one, the domain state) so that
most ops name snapshots that really exist, most flag combinations are ones a
program would pass, and a minority probes the error paths: deleted names
(stale handles), never-existing names, mutually exclusive or undefined flag
bits, malformed XML, read-only connections.  The model only steers choices;
it is never compared with anything, so where it drifts from libvirt the
sequence just gets a little less meaningful, not wrong.

The generator must be pure (no clock, no environment) so that the same seed
gives the same ops on every machine: the libvirt and virtsnap runs of a seed
see identical input.
"""

import argparse
import json
import random
from xml.sax.saxutils import escape as xml_escape

PREFIX = "VIR_DOMAIN_SNAPSHOT_"

# libvirt's ABI values, needed here only to pick bits that libvirt does NOT
# define and by compare.py to recognise hash-ordered list calls.  The runner
# itself resolves names with getattr on the implementation under test.
FLAG_VALUES = {
    "VIR_DOMAIN_SNAPSHOT_CREATE_REDEFINE": 1,
    "VIR_DOMAIN_SNAPSHOT_CREATE_CURRENT": 2,
    "VIR_DOMAIN_SNAPSHOT_CREATE_NO_METADATA": 4,
    "VIR_DOMAIN_SNAPSHOT_CREATE_HALT": 8,
    "VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY": 16,
    "VIR_DOMAIN_SNAPSHOT_CREATE_REUSE_EXT": 32,
    "VIR_DOMAIN_SNAPSHOT_CREATE_QUIESCE": 64,
    "VIR_DOMAIN_SNAPSHOT_CREATE_ATOMIC": 128,
    "VIR_DOMAIN_SNAPSHOT_CREATE_LIVE": 256,
    "VIR_DOMAIN_SNAPSHOT_CREATE_VALIDATE": 512,
    "VIR_DOMAIN_SNAPSHOT_LIST_ROOTS": 1,
    "VIR_DOMAIN_SNAPSHOT_LIST_DESCENDANTS": 1,
    "VIR_DOMAIN_SNAPSHOT_LIST_METADATA": 2,
    "VIR_DOMAIN_SNAPSHOT_LIST_LEAVES": 4,
    "VIR_DOMAIN_SNAPSHOT_LIST_NO_LEAVES": 8,
    "VIR_DOMAIN_SNAPSHOT_LIST_NO_METADATA": 16,
    "VIR_DOMAIN_SNAPSHOT_LIST_INACTIVE": 32,
    "VIR_DOMAIN_SNAPSHOT_LIST_ACTIVE": 64,
    "VIR_DOMAIN_SNAPSHOT_LIST_DISK_ONLY": 128,
    "VIR_DOMAIN_SNAPSHOT_LIST_INTERNAL": 256,
    "VIR_DOMAIN_SNAPSHOT_LIST_EXTERNAL": 512,
    "VIR_DOMAIN_SNAPSHOT_LIST_TOPOLOGICAL": 1024,
    "VIR_DOMAIN_SNAPSHOT_REVERT_RUNNING": 1,
    "VIR_DOMAIN_SNAPSHOT_REVERT_PAUSED": 2,
    "VIR_DOMAIN_SNAPSHOT_REVERT_FORCE": 4,
    "VIR_DOMAIN_SNAPSHOT_REVERT_RESET_NVRAM": 8,
    "VIR_DOMAIN_SNAPSHOT_DELETE_CHILDREN": 1,
    "VIR_DOMAIN_SNAPSHOT_DELETE_METADATA_ONLY": 2,
    "VIR_DOMAIN_SNAPSHOT_DELETE_CHILDREN_ONLY": 4,
    "VIR_DOMAIN_SNAPSHOT_XML_SECURE": 1,
}

# Highest defined bit + 1 per flag family; undefined bits are drawn above it.
UNDEFINED_FROM = {"CREATE": 10, "LIST": 11, "REVERT": 4, "DELETE": 3, "XML": 1, "NONE": 0}

# List filter groups: OR inside a group, AND across groups (see DESIGN.md 4).
LIST_GROUPS = [
    ["LIST_LEAVES", "LIST_NO_LEAVES"],
    ["LIST_METADATA", "LIST_NO_METADATA"],
    ["LIST_INACTIVE", "LIST_ACTIVE", "LIST_DISK_ONLY"],
    ["LIST_INTERNAL", "LIST_EXTERNAL"],
    ["LIST_TOPOLOGICAL"],
]

# Fresh names with characters that stress XML escaping and name handling.
# None is ten digits long: compare.py treats ten-digit names as Unix-time
# default names.
# Names virtsnap refuses on purpose ('/', a leading '.', control characters: they cannot be file
# names or hide characters) are left out here; tests/unit/test_names.py checks those refusals.
SPECIAL_NAMES = ["snap one", "x&y<z>", "q'uo\"te", "\u00fcn\u00efc\u00f8d\u00e9",
                 "-dash", "1234", "dot.name"]

DESCRIPTIONS = ["plain description", "amp & lt < gt > apos ' quot \"",
                "multi\nline\ndescription", "  padded  ", "\u00fcn\u00efc\u00f8d\u00e9 \u2713", ""]

# (element, accepted): whether libvirt's test driver (internal snapshots
# only) takes it on a plain create; the model uses it to predict success.
MEMORY_ELEMENTS = [
    ("<memory snapshot='no'/>", True),
    ("<memory snapshot='internal'/>", True),
    ("<memory snapshot='external' file='/virtsnap-diff/mem.img'/>", False),
    ("<memory snapshot='external'/>", False),
    ("<memory file='/virtsnap-diff/mem2.img'/>", False),
]

DISKS_ELEMENTS = [
    ("<disks><disk name='vda' snapshot='no'/></disks>", False),
    ("<disks><disk name='vda' snapshot='internal'/></disks>", True),
    ("<disks><disk name='vda' snapshot='external'>"
     "<source file='/virtsnap-diff/vda.ovl'/></disk></disks>", False),
    ("<disks><disk name='vda' snapshot='external' type='file'><driver type='qcow2'/>"
     "<source file='/virtsnap-diff/vda2.qcow2'/></disk></disks>", False),
    ("<disks><disk name='vda' snapshot='external'/></disks>", False),
    ("<disks><disk name='/guest/diskimage1' snapshot='internal'/></disks>", True),
    ("<disks/>", True),
]

# Elements that a plain (non-redefine) create must ignore.
IGNORED_ELEMENTS = [
    "<state>shutoff</state>",
    "<parent><name>s0</name></parent>",
    "<creationTime>1234567890</creationTime>",
]

# Odd creates, mostly broken; {n} is replaced by a fresh name so an error
# is about the XML, not about a duplicate.  (xml, accepted) as above.
ODD_XML = [
    ("<domainsnapshot><name>{n}</name>", False),
    ("<snapshot><name>{n}</name></snapshot>", False),
    ("", False),
    ("<domainsnapshot><name>{n}</name><memory snapshot='bogus'/></domainsnapshot>", False),
    ("<domainsnapshot><name>{n}</name><disks><disk name='vda' snapshot='bogus'/></disks>"
     "</domainsnapshot>", False),
    ("<domainsnapshot><name>{n}</name><disks><disk name='vda'/><disk name='vda'/></disks>"
     "</domainsnapshot>", False),
    ("<domainsnapshot><name>{n}</name><disks><disk name='vdb'/></disks></domainsnapshot>",
     False),
    ("<domainsnapshot><name>{n}</name>&bogus;</domainsnapshot>", False),
    ("<domainsnapshot><name>{n}</name><bogus/></domainsnapshot>", True),
    ("<domainsnapshot><name>{n}</name><memory snapshot='no'/>"
     "<disks><disk name='vda' snapshot='internal'/></disks></domainsnapshot>", True),
    ("<domainsnapshot><name>{n}</name><memory file='/virtsnap-diff/mem3.img'/>"
     "<disks><disk name='vda' snapshot='no'/></disks></domainsnapshot>", True),
]

# The snapshot's own <name> is the first element of <domainsnapshot>; the
# later <name>s belong to <parent> and to the embedded <domain>.
OWN_NAME_RE = r"\A(<domainsnapshot>\s*<name>)[^<]*(</name>)"
PARENT_RE = r"\s*<parent>\s*<name>[^<]*</name>\s*</parent>"
AFTER_STATE_RE = r"(<state>[^<]*</state>)"


def flag(*suffixes):
    """Full constant names for short suffixes (e.g. "LIST_ROOTS")."""
    return [PREFIX + s for s in suffixes]


def sub_literal(text):
    """Escape text for use as an re.sub replacement."""
    return text.replace("\\", "\\\\")


def xml_text(text):
    """Escape text for an XML text node (libvirt-style, quotes untouched)."""
    return xml_escape(text)


class Model:
    """Approximation of the test driver's snapshot forest and domain state."""

    def __init__(self):
        self.parent = {}        # name -> parent name (None for a root)
        self.state = {}         # name -> 'running' | 'paused' | 'shutoff'
        self.current = None
        self.ever = []          # every name that ever existed, in order
        self.dom = "running"    # test:///default starts with "test" running
        self.anon = 0           # counter for unnamed snapshots

    def names(self):
        """Existing snapshots that can be referred to by name."""
        return [n for n in self.parent if not n.startswith("<anon")]

    def children(self, name):
        return [c for c, p in self.parent.items() if p == name]

    def descendants(self, name):
        out, todo = [], self.children(name)
        while todo:
            child = todo.pop()
            out.append(child)
            todo.extend(self.children(child))
        return out

    def add(self, name, parent, state):
        self.parent[name] = parent
        self.state[name] = state
        if name not in self.ever:
            self.ever.append(name)

    def create(self, name, halt):
        if name is None:
            self.anon += 1
            name = "<anon%d>" % self.anon
        self.add(name, self.current, self.dom)
        self.current = name
        if halt:
            self.dom = "shutoff"

    def delete(self, name, children, children_only):
        if children or children_only:
            doomed = self.descendants(name)
            if self.current in doomed:
                self.current = name
            for d in doomed:
                del self.parent[d]
            if children_only:
                return
        else:
            for child in self.children(name):
                self.parent[child] = self.parent[name]
        if self.current == name:
            self.current = self.parent[name]
        del self.parent[name]

    def revert(self, name, running, paused):
        self.current = name
        snap_state = self.state.get(name, "running")
        if snap_state == "shutoff":
            # libvirt 9.0's test driver only emits the start events here:
            # the domain stays shut off even with RUNNING/PAUSED.
            self.dom = "shutoff"
        elif running:
            self.dom = "running"
        elif paused:
            self.dom = "paused"
        else:
            self.dom = snap_state


class Generator:
    """Produces one op sequence for a seed."""

    def __init__(self, seed, n_ops):
        self.rng = random.Random(seed)
        self.n_ops = n_ops
        self.model = Model()
        self.counter = 0
        self.unnamed_budget = 2   # each unnamed create may cost a 1 s wait
        self.specials = list(SPECIAL_NAMES)
        self.rng.shuffle(self.specials)

    # -- choices ---------------------------------------------------------

    def chance(self, p):
        return self.rng.random() < p

    def weighted(self, table):
        """Pick a value from [(weight, value), ...]."""
        total = sum(w for w, _ in table)
        x = self.rng.uniform(0, total)
        for weight, value in table:
            x -= weight
            if x <= 0:
                return value
        return table[-1][1]

    def undefined_bit(self, family):
        return 1 << self.rng.randrange(UNDEFINED_FROM[family], 32)

    def fresh_name(self):
        deleted = [n for n in self.model.ever if n not in self.model.parent]
        if deleted and self.chance(0.15):
            return self.rng.choice(deleted)   # re-use: stale handles collide
        if self.specials and self.chance(0.04):
            return self.specials.pop()
        self.counter += 1
        return "s%d" % self.counter

    def pick_name(self):
        """Mostly an existing snapshot, sometimes a deleted or bogus one."""
        existing = self.model.names()
        deleted = [n for n in self.model.ever if n not in self.model.parent]
        roll = self.rng.random()
        if existing and roll < 0.85:
            return self.rng.choice(existing)
        if deleted and roll < 0.95:
            return self.rng.choice(deleted)
        return self.rng.choice(["nosuch", "s0", "S1", "", "s1 "])

    def list_flags(self, level):
        """Random list filter flags, occasionally with an undefined bit."""
        flags = []
        if self.chance(0.3):
            flags += flag("LIST_ROOTS" if level == "domain" else "LIST_DESCENDANTS")
        for group in LIST_GROUPS:
            if self.chance(0.25):
                picked = [g for g in group if self.chance(0.5)] or [self.rng.choice(group)]
                flags += flag(*picked)
        if self.chance(0.04):
            flags.append(self.undefined_bit("LIST"))
        return flags

    def zero_flags(self):
        """Flags for a call that accepts none: usually 0, sometimes not."""
        return self.weighted([(85, []), (10, [1]), (5, [self.undefined_bit("NONE")])])

    def maybe_flags(self, op, flags, omit=0.15):
        """Set op["flags"], or leave it out to test the default argument."""
        if not self.chance(omit):
            op["flags"] = flags
        return op

    def snap_op(self, kind, name=None):
        op = {"op": kind, "snap": name if name is not None else self.pick_name(),
              "via": "cache" if self.chance(0.7) else "lookup"}
        if self.chance(0.04):
            op["ro"] = True
        return op

    # -- XML -------------------------------------------------------------

    def create_xml(self, name):
        """A plain create XML, in compact or indented layout.

        Returns (xml, accepted): accepted predicts whether libvirt's test
        driver takes the memory/disks elements.
        """
        accepted = True
        parts = []
        if name is not None:
            parts.append("<name>%s</name>" % xml_text(name))
        if self.chance(0.25):
            parts.append("<description>%s</description>"
                         % xml_text(self.rng.choice(DESCRIPTIONS)))
        if self.chance(0.06):
            parts.append(self.rng.choice(IGNORED_ELEMENTS))
        for table in (MEMORY_ELEMENTS, DISKS_ELEMENTS):
            if self.chance(0.15):
                element, ok = self.rng.choice(table)
                parts.append(element)
                accepted = accepted and ok
        if not parts and self.chance(0.5):
            return "<domainsnapshot/>", accepted
        if self.chance(0.5):
            return "<domainsnapshot>%s</domainsnapshot>" % "".join(parts), accepted
        return "<domainsnapshot>\n%s\n</domainsnapshot>\n" % "\n".join(
            "  " + p for p in parts), accepted

    # -- op makers ---------------------------------------------------------

    def op_create(self):
        m = self.model
        op = {"op": "snapshotCreateXML"}
        if self.chance(0.05):
            name = self.fresh_name()
            template, accepted = self.rng.choice(ODD_XML)
            op["xml"] = template.format(n=xml_text(name))
            op["flags"] = []
            if accepted:
                m.create(name, halt=False)
            return op
        if self.unnamed_budget and self.chance(0.04):
            self.unnamed_budget -= 1
            name = None
            op["unnamed"] = True
        elif m.names() and self.chance(0.06):
            name = self.rng.choice(m.names())       # duplicate name
        else:
            name = self.fresh_name()
        op["xml"], accepted = self.create_xml(name)
        flags = self.weighted([
            (60, []), (8, flag("CREATE_HALT")), (8, flag("CREATE_VALIDATE")),
            (2, flag("CREATE_QUIESCE")), (2, flag("CREATE_ATOMIC")),
            (2, flag("CREATE_LIVE")), (2, flag("CREATE_ATOMIC", "CREATE_LIVE")),
            (4, flag("CREATE_DISK_ONLY")), (4, flag("CREATE_NO_METADATA")),
            (3, flag("CREATE_CURRENT")), (2, flag("CREATE_REUSE_EXT")),
            (2, flag("CREATE_REDEFINE")), (2, flag("CREATE_HALT", "CREATE_VALIDATE")),
            (3, [self.undefined_bit("CREATE")]),
        ])
        self.maybe_flags(op, flags, omit=0.1)
        if self.chance(0.03):
            op["ro"] = True
        ok = (accepted and not op.get("ro") and (name is None or name not in m.parent)
              and set(op.get("flags", [])) <= set(flag(
                  "CREATE_HALT", "CREATE_VALIDATE", "CREATE_QUIESCE",
                  "CREATE_ATOMIC", "CREATE_LIVE")))
        if ok:
            m.create(name, halt=PREFIX + "CREATE_HALT" in op.get("flags", []))
        return op

    def op_redefine(self):
        m = self.model
        src = self.pick_name()
        op = self.snap_op("redefine_from", src)
        op.pop("ro", None)
        op["flags"] = self.weighted([
            (50, flag("CREATE_REDEFINE")), (25, flag("CREATE_REDEFINE", "CREATE_CURRENT")),
            (8, flag("CREATE_REDEFINE", "CREATE_VALIDATE")),
            (5, flag("CREATE_REDEFINE", "CREATE_CURRENT", "CREATE_VALIDATE")),
            (3, flag("CREATE_REDEFINE", "CREATE_NO_METADATA")),
            (3, flag("CREATE_REDEFINE", "CREATE_HALT")),
            (2, flag("CREATE_REDEFINE", "CREATE_DISK_ONLY")),
            (2, flag("CREATE_REDEFINE", "CREATE_LIVE")),
            (2, flag("CREATE_REDEFINE") + [self.undefined_bit("CREATE")]),
        ])
        if self.chance(0.1):
            op["xml_flags"] = flag("XML_SECURE")
        variant = self.weighted([(45, "restore"), (25, "clone"), (10, "inplace"),
                                 (20, "broken")])
        subs = []
        new_name = src
        new_parent = m.parent.get(src)
        if variant == "restore":
            op["delete_flags"] = self.weighted([(80, []), (20, flag("DELETE_CHILDREN"))])
        elif variant == "clone":
            new_name = self.fresh_name()
            subs.append([OWN_NAME_RE, r"\g<1>%s\g<2>" % sub_literal(xml_text(new_name))])
        elif variant == "inplace":
            subs.append([r"\s*<description>.*?</description>", "", 1])
            subs.append([r"(</name>)", r"\1\n  <description>%s</description>"
                         % sub_literal(xml_text(self.rng.choice(DESCRIPTIONS))), 1])
        else:
            breakage = self.rng.choice(["no_time", "bad_state", "shutoff", "paused",
                                        "missing_parent", "self_parent", "root",
                                        "no_domain", "dup_name", "desc_parent"])
            if breakage == "no_time":
                subs.append([r"\s*<creationTime>[^<]*</creationTime>", ""])
            elif breakage in ("bad_state", "shutoff", "paused"):
                state = {"bad_state": "bogus"}.get(breakage, breakage)
                subs.append([r"<state>[^<]*</state>", "<state>%s</state>" % state])
            elif breakage == "no_domain":
                subs.append([r"\s*<domain[ >].*</domain>", ""])
            elif breakage == "dup_name" and m.names():
                new_name = self.rng.choice(m.names())
                subs.append([OWN_NAME_RE, r"\g<1>%s\g<2>" % sub_literal(xml_text(new_name))])
            else:
                target = {"missing_parent": "nosuch-parent", "self_parent": src,
                          "root": None}.get(breakage)
                if breakage == "desc_parent":
                    desc = m.descendants(src)
                    target = self.rng.choice(desc) if desc else "nosuch-parent"
                subs.append([PARENT_RE, ""])
                if target is not None:
                    subs.append([AFTER_STATE_RE, r"\1\n  <parent>\n    <name>%s</name>\n"
                                 r"  </parent>" % sub_literal(xml_text(target)), 1])
                new_parent = target
            if breakage not in ("root", "no_domain"):
                new_name = None   # assume failure in the model
        if subs:
            op["subs"] = subs
        self.model_redefine(op, src, new_name, new_parent)
        return op

    def model_redefine(self, op, src, new_name, new_parent):
        """Best-effort model update for a redefine_from op."""
        m = self.model
        if src not in m.parent or new_name is None:
            return
        state = m.state[src]
        if "delete_flags" in op:
            m.delete(src, PREFIX + "DELETE_CHILDREN" in op["delete_flags"], False)
        if new_parent is not None and new_parent not in m.parent:
            return
        if set(op["flags"]) - set(flag("CREATE_REDEFINE", "CREATE_CURRENT",
                                       "CREATE_VALIDATE")):
            return
        if new_name in m.parent and new_name != src:
            return
        if new_name in m.parent:
            m.parent[new_name] = new_parent      # in-place redefine re-parents
        else:
            m.add(new_name, new_parent, state)
        if PREFIX + "CREATE_CURRENT" in op["flags"]:
            m.current = new_name

    def op_revert(self):
        m = self.model
        op = self.snap_op("revertToSnapshot")
        flags = self.weighted([
            (40, []), (15, flag("REVERT_RUNNING")), (15, flag("REVERT_PAUSED")),
            (8, flag("REVERT_FORCE")), (5, flag("REVERT_RUNNING", "REVERT_FORCE")),
            (5, flag("REVERT_PAUSED", "REVERT_FORCE")),
            (4, flag("REVERT_RUNNING", "REVERT_PAUSED")),
            (3, flag("REVERT_RESET_NVRAM")), (3, [self.undefined_bit("REVERT")]),
        ])
        self.maybe_flags(op, flags, omit=0.05)
        f = set(op.get("flags", []))
        running, paused = PREFIX + "REVERT_RUNNING" in f, PREFIX + "REVERT_PAUSED" in f
        # No "risky revert" case: libvirt 9.0's test driver reverts a running
        # domain to a shut-off snapshot with RUNNING/PAUSED without complaint.
        if (op["snap"] in m.parent and not op.get("ro") and not (running and paused)
                and f <= set(flag("REVERT_RUNNING", "REVERT_PAUSED", "REVERT_FORCE"))):
            m.revert(op["snap"], running, paused)
        return op

    def op_delete(self):
        m = self.model
        op = self.snap_op("delete")
        flags = self.weighted([
            (55, []), (15, flag("DELETE_CHILDREN")), (12, flag("DELETE_CHILDREN_ONLY")),
            (6, flag("DELETE_METADATA_ONLY")),
            (4, flag("DELETE_CHILDREN", "DELETE_CHILDREN_ONLY")),
            (3, flag("DELETE_METADATA_ONLY", "DELETE_CHILDREN")),
            (3, [self.undefined_bit("DELETE")]),
        ])
        self.maybe_flags(op, flags, omit=0.05)
        f = set(op.get("flags", []))
        children = PREFIX + "DELETE_CHILDREN" in f
        only = PREFIX + "DELETE_CHILDREN_ONLY" in f
        if (op["snap"] in m.parent and not op.get("ro") and not (children and only)
                and f <= set(flag("DELETE_CHILDREN", "DELETE_CHILDREN_ONLY"))):
            m.delete(op["snap"], children, only)
        return op

    def op_domain(self, kind):
        m = self.model
        op = {"op": kind}
        if self.chance(0.03):
            op["ro"] = True
        if kind in ("state", "XMLDesc") and self.chance(0.3):
            op["flags"] = self.zero_flags() if kind == "state" else self.weighted(
                [(80, []), (20, [1])])   # VIR_DOMAIN_XML_SECURE
        if op.get("ro"):
            return op
        transitions = {"suspend": ("running", "paused"), "resume": ("paused", "running"),
                       "create": ("shutoff", "running")}
        if kind in transitions and m.dom == transitions[kind][0]:
            m.dom = transitions[kind][1]
        elif kind == "destroy" and m.dom != "shutoff":
            m.dom = "shutoff"
        return op

    def op_query(self, kind):
        if kind in ("snapshotNum", "snapshotListNames", "listAllSnapshots"):
            op = {"op": kind}
            if self.chance(0.03):
                op["ro"] = True
            return self.maybe_flags(op, self.list_flags("domain"), omit=0.1)
        if kind in ("numChildren", "listChildrenNames", "listAllChildren"):
            return self.maybe_flags(self.snap_op(kind), self.list_flags("snapshot"), omit=0.1)
        if kind in ("snapshotCurrent", "hasCurrentSnapshot"):
            op = {"op": kind}
            return self.maybe_flags(op, self.zero_flags(), omit=0.5)
        if kind == "snapshotLookupByName":
            op = {"op": kind, "name": self.pick_name()}
            return self.maybe_flags(op, self.zero_flags(), omit=0.5)
        if kind == "getXMLDesc":
            return self.maybe_flags(self.snap_op(kind), self.weighted(
                [(75, []), (20, flag("XML_SECURE")), (5, [self.undefined_bit("XML")])]))
        # getName, getParent, isCurrent, hasMetadata
        op = self.snap_op(kind)
        if kind != "getName":
            self.maybe_flags(op, self.zero_flags(), omit=0.5)
        return op

    def generate(self):
        """Return the op list: a constants probe, then n_ops random ops."""
        table = [
            (16, self.op_create), (5, self.op_redefine), (8, self.op_revert),
            (7, self.op_delete),
        ]
        for weight, kind in [(3, "snapshotCurrent"), (2, "hasCurrentSnapshot"),
                             (4, "snapshotLookupByName"), (4, "getParent"),
                             (3, "isCurrent"), (2, "hasMetadata"), (4, "numChildren"),
                             (4, "listChildrenNames"), (4, "listAllChildren"),
                             (4, "snapshotNum"), (5, "snapshotListNames"),
                             (5, "listAllSnapshots"), (4, "getXMLDesc"), (1, "getName")]:
            table.append((weight, lambda k=kind: self.op_query(k)))
        for weight, kind in [(3, "state"), (1, "info"), (1, "isActive"), (1, "ID"),
                             (1, "XMLDesc"), (2, "suspend"), (2, "resume"),
                             (2, "destroy"), (2, "create")]:
            table.append((weight, lambda k=kind: self.op_domain(k)))
        ops = [{"op": "constants"}]
        # Start with a few plain creates so early queries have a tree to see.
        for _ in range(min(3, self.n_ops)):
            name = self.fresh_name()
            ops.append({"op": "snapshotCreateXML", "flags": [],
                        "xml": "<domainsnapshot><name>%s</name></domainsnapshot>"
                               % xml_text(name)})
            self.model.create(name, halt=False)
        self.trace = [None] * len(ops)
        while len(ops) < self.n_ops + 1:
            ops.append(self.weighted(table)())
            # What the model believes after each op; only for measuring how
            # well the model tracks libvirt (see the module docstring).
            self.trace.append((sorted(self.model.names()), self.model.current,
                               self.model.dom))
        return ops


# The tree profile: what an offline QEMU domain (never started, internal snapshots by qemu-img) and the test
# driver's domain, shut off, must do alike.  Dropped: domain lifecycle calls (they would boot a guest),
# creates whose flags or <memory>/<disks> are about a running guest or another disk layout, reverts that ask for
# a running or paused guest, NO_METADATA creates and METADATA_ONLY deletes (the test driver refuses those flags;
# QEMU supports them), and redefines that delete first or rename: they make metadata for a snapshot whose data
# is gone, which QEMU refuses to revert to and the test driver (which has no data) does not.
TREE_DROPPED_OPS = {"state", "info", "isActive", "ID", "XMLDesc", "suspend", "resume", "destroy", "create"}
TREE_DROPPED_CREATE_FLAGS = set(flag("CREATE_HALT", "CREATE_DISK_ONLY", "CREATE_LIVE", "CREATE_QUIESCE",
                                     "CREATE_ATOMIC", "CREATE_REUSE_EXT", "CREATE_NO_METADATA"))


def tree_ops(ops):
    """The ops of a sequence that the tree profile runs (see TREE_DROPPED_OPS)."""
    out = []
    for op in ops:
        kind, flags = op["op"], set(op.get("flags", []))
        if kind in TREE_DROPPED_OPS:
            continue
        if kind in ("snapshotCreateXML", "redefine_from") and flags & TREE_DROPPED_CREATE_FLAGS:
            continue
        if kind == "snapshotCreateXML" and ("<memory" in op["xml"] or "<disks" in op["xml"]):
            continue
        if kind == "redefine_from" and ("delete_flags" in op or any(sub[0] == OWN_NAME_RE
                                                                    for sub in op.get("subs", []))):
            continue
        if kind == "revertToSnapshot":
            guest = flags & set(flag("REVERT_RUNNING", "REVERT_PAUSED", "REVERT_RESET_NVRAM"))
            if guest and guest != set(flag("REVERT_RUNNING", "REVERT_PAUSED")):  # both: refused up front
                continue
        if (kind == "delete" or "delete_flags" in op) and PREFIX + "DELETE_METADATA_ONLY" in (
                flags if kind == "delete" else set(op["delete_flags"])):
            continue
        out.append(op)
    return out


def generate(seed, n_ops=300):
    """The op list for a seed (a constants probe plus n_ops ops)."""
    return Generator(seed, n_ops).generate()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ops", type=int, default=300)
    args = parser.parse_args(argv)
    print(json.dumps(generate(args.seed, args.ops), indent=1))


if __name__ == "__main__":
    main()
