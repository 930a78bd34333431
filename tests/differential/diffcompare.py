"""Normalise runner.py results and find the first difference between two runs.

What is masked, and why (everything else is compared exactly: values, list
order, error code, error domain, full error message):

* ``<creationTime>N</creationTime>`` - wall-clock seconds.  Masked here, but
  not unchecked: after every plain create the runner reads the new
  snapshot's creationTime back and records whether it lies within the
  call's wall-clock window (``"time_in_window"``), which is compared.
* ``info()[4]`` (cpuTime) - the test driver reports the current time of day
  in nanoseconds there, not a CPU counter.
* Names of unnamed snapshots - libvirt names them after their creation time
  in Unix seconds.  Every name returned by an op marked "unnamed" becomes
  ``<unnamed-K>`` (K counting unnamed creates in sequence order), wherever it
  appears: in names, lists, XML and error messages.
* Order of domain-level lists without ROOTS and without TOPOLOGICAL
  (snapshotListNames / listAllSnapshots): libvirt walks its name hash table,
  whose hash function is seeded randomly per process (measured: the same op
  sequence gives a different order in each run), so only the set is
  meaningful and both sides are sorted.  ROOTS lists, TOPOLOGICAL lists and
  every child/descendant list come from libvirt's linked sibling lists (newest
  child first, depth-first) and ARE deterministic, so their order is compared
  as returned.
* ``exc`` results compare by exception type only; the message is shown in
  the report but is Python-version dependent.
* Schema validation errors (code 92): the path of the schema file in the
  message (libvirt's /usr/share/libvirt/schemas/..., virtsnap's package
  copy) becomes ``<schema>/NAME.rng``; the rest of the message is compared.
* ``LIST_LEAVES | LIST_NO_LEAVES``: virtsnap follows libvirt's documentation
  (a group with all its bits set filters nothing; see README), libvirt 9.0
  returns nothing.  ``as_documented`` gives libvirt the same call without
  that group, so its documented answer is what virtsnap's is compared with.

The "tree" profile (an offline QEMU domain against the test driver's domain
shut off) also maps the error domain of the driver (VIR_FROM_TEST 12,
VIR_FROM_QEMU 10) and the driver's function name in "unsupported flags"
messages to one placeholder, and compares snapshot XML without the embedded
``<domain>`` (a test-driver domain and a QEMU domain are different things).

Kept free of imports from its siblings so the test can load it by path
(tests elsewhere in the tree may have modules of the same short name); the
flag values come from gen.FLAG_VALUES through the ``flag_values`` argument.
"""

import json
import re

CREATION_TIME_RE = re.compile(r"<creationTime>\d+</creationTime>")
HASH_ORDERED_OPS = {"snapshotListNames", "listAllSnapshots"}
ORDERED_LIST_FLAGS = ("VIR_DOMAIN_SNAPSHOT_LIST_ROOTS", "VIR_DOMAIN_SNAPSHOT_LIST_TOPOLOGICAL")


SCHEMA_PATH_RE = re.compile(r"Unable to validate doc against \S*/([^/\s]+\.rng)")
DRIVER_FUNCTION_RE = re.compile(r"in function (?:test|qemu)Domain")
EMBEDDED_DOMAIN_RE = re.compile(r"\n *<domain[ >].*</domain>", re.S)
DRIVER_ERROR_DOMAINS = (10, 12)   # VIR_FROM_QEMU, VIR_FROM_TEST

# Where virtsnap follows libvirt's documentation instead of libvirt 9.0's behaviour, on purpose:
# libvirt's API docs say a filter group with all its bits set filters nothing, but 9.0 returns no
# snapshot at all for LEAVES|NO_LEAVES. virtsnap lists everything (README); libvirt is asked the
# documented equivalent, the same call without the group (as_documented).
DOCUMENTED_GROUPS = (("VIR_DOMAIN_SNAPSHOT_LIST_LEAVES", "VIR_DOMAIN_SNAPSHOT_LIST_NO_LEAVES"),)
LIST_OPS = {"snapshotListNames", "listAllSnapshots", "snapshotNum", "listChildrenNames",
            "listAllChildren", "numChildren"}


def as_documented(ops):
    """The ops libvirt runs: a list call with a whole filter group set loses that group (it filters nothing)."""
    out = []
    for op in ops:
        flags = op.get("flags")
        if op["op"] in LIST_OPS and flags:
            for group in DOCUMENTED_GROUPS:
                if all(name in flags for name in group):
                    op = dict(op, flags=[f for f in flags if f not in group])
        out.append(op)
    return out


def flag_value(spec, flag_values):
    """Numeric value of an op's flag list using libvirt's ABI values."""
    value = 0
    for item in spec:
        value |= flag_values[item] if isinstance(item, str) else int(item)
    return value


def _map_strings(value, func):
    """Apply func to every string inside a JSON value (keys included)."""
    if isinstance(value, str):
        return func(value)
    if isinstance(value, list):
        return [_map_strings(v, func) for v in value]
    if isinstance(value, dict):
        return {func(k): _map_strings(v, func) for k, v in value.items()}
    return value


def normalize(ops, results, flag_values, profile="full"):
    """Return a masked copy of results (see module docstring)."""
    results = json.loads(json.dumps(results))   # deep copy
    ordered_bits = 0
    for name in ORDERED_LIST_FLAGS:
        ordered_bits |= flag_values[name]

    # Unnamed snapshot names -> placeholders, in order of their creation.
    placeholders = {}
    for op, res in zip(ops, results):
        if op.get("unnamed") and isinstance(res.get("ok"), str):
            placeholders.setdefault(res["ok"], "<unnamed-%d>" % (len(placeholders) + 1))
    if placeholders:
        name_re = re.compile(r"(?<![0-9])(%s)(?![0-9])"
                             % "|".join(re.escape(n) for n in placeholders))
    else:
        name_re = None

    def mask(text):
        text = CREATION_TIME_RE.sub("<creationTime>MASKED</creationTime>", text)
        text = SCHEMA_PATH_RE.sub(r"Unable to validate doc against <schema>/\1", text)
        if profile == "tree":
            text = DRIVER_FUNCTION_RE.sub("in function <driver>Domain", text)
            text = EMBEDDED_DOMAIN_RE.sub("", text)
        if name_re is not None:
            text = name_re.sub(lambda m: placeholders[m.group(1)], text)
        return text

    out = []
    for op, res in zip(ops, results):
        res = _map_strings(res, mask)
        if "exc" in res:
            res["exc"] = [res["exc"][0], "(message not compared)"]
        err = res.get("err")
        if profile == "tree" and isinstance(err, list) and len(err) == 3 and err[1] in DRIVER_ERROR_DOMAINS:
            res["err"] = [err[0], "<driver>", err[2]]
        ok = res.get("ok")
        if op["op"] == "info" and isinstance(ok, list) and len(ok) == 5:
            ok[4] = "MASKED-cpuTime"
        if (op["op"] in HASH_ORDERED_OPS and isinstance(ok, list)
                and not flag_value(op.get("flags", []), flag_values) & ordered_bits):
            res["ok"] = sorted(ok)
        out.append(res)
    return out


def first_difference(ops, expected, actual, flag_values, context=5, profile="full"):
    """Describe the first op whose normalised results differ, or None.

    ``expected`` is libvirt's raw result list, ``actual`` the candidate's.
    The description shows the differing op with both results, preceded by
    the previous ``context`` ops and their (libvirt) results, so that a
    failure can be read without re-running anything.
    """
    exp = normalize(ops, expected, flag_values, profile)
    act = normalize(ops, actual, flag_values, profile)
    if len(exp) != len(ops) or len(act) != len(ops):
        return ("result count differs: %d ops, %d expected results, %d actual results"
                % (len(ops), len(exp), len(act)))
    for i, (e, a) in enumerate(zip(exp, act)):
        if e == a:
            continue
        lines = ["first difference at op #%d of %d" % (i, len(ops)), "context:"]
        for j in range(max(0, i - context), i):
            lines.append("  #%d %s" % (j, json.dumps(ops[j], ensure_ascii=False)))
            lines.append("      -> %s" % _short(exp[j]))
        lines.append("differing op:")
        lines.append("  #%d %s" % (i, json.dumps(ops[i], ensure_ascii=False)))
        lines.append("  libvirt  : %s" % json.dumps(expected[i], ensure_ascii=False))
        lines.append("  candidate: %s" % json.dumps(actual[i], ensure_ascii=False))
        lines.append("  (normalised libvirt  : %s)" % json.dumps(e, ensure_ascii=False))
        lines.append("  (normalised candidate: %s)" % json.dumps(a, ensure_ascii=False))
        return "\n".join(lines)
    return None


def _short(value, limit=300):
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[:limit] + "..."
