#!/usr/bin/python
# -*- coding: utf-8 -*-
"""Ansible module virtsnap.virtsnap.snapshot_prune: delete the snapshots of a domain that a keep-* retention
policy does not keep (snapshot-prune's rules), through virtsnap's public API; check mode lists what would go."""

from __future__ import annotations

DOCUMENTATION = r"""
module: snapshot_prune
short_description: Delete the domain snapshots a retention policy does not keep, with virtsnap
description:
  - Applies the keep-* retention policy of C(virtsnap snapshot-prune) (Proxmox Backup Server's rules, in the
    managed host's local time) to one domain's snapshots through virtsnap's API on the managed host.
  - Protected snapshots, the current snapshot and its ancestors are always kept.
  - Removals are ordinary deletes (children move to the deleted snapshot's parent), oldest first.
  - In check mode the connection is opened read-only and the module reports what would be removed.
options:
  uri:
    description: Connection URI on the managed host.
    type: str
    default: qemu:///system
  domain:
    description: Domain name.
    type: str
    required: true
  keep_last:
    description: Keep the newest N snapshots.
    type: int
  keep_hourly:
    description: Keep the newest snapshot of each of the last N hours that have one.
    type: int
  keep_daily:
    description: Keep the newest snapshot of each of the last N days that have one.
    type: int
  keep_weekly:
    description: Keep the newest snapshot of each of the last N ISO weeks that have one.
    type: int
  keep_monthly:
    description: Keep the newest snapshot of each of the last N months that have one.
    type: int
  keep_yearly:
    description: Keep the newest snapshot of each of the last N years that have one.
    type: int
  match:
    description: Only snapshots whose names match this glob take part; the others are kept.
    type: str
attributes:
  check_mode:
    support: full
    description: Lists what would be removed and changes nothing.
  diff_mode:
    support: full
    description: The snapshot names before and after, newest first.
notes:
  - At least one keep_* option is required.
  - virtsnap must be installed for the Python interpreter Ansible uses on the managed host.
author: virtsnap developers (@virtsnap)
"""

EXAMPLES = r"""
- name: Keep a week of daily and a month of weekly snapshots of web1
  virtsnap.virtsnap.snapshot_prune:
    domain: web1
    keep_daily: 7
    keep_weekly: 4

- name: What would the nightly-* policy remove?
  virtsnap.virtsnap.snapshot_prune:
    domain: web1
    match: "nightly-*"
    keep_last: 3
  check_mode: true
  register: would
"""

RETURN = r"""
removed:
  description: The names of the snapshots removed (in check mode, that would be removed), newest first.
  type: list
  elements: str
  returned: always
  sample: [nightly-2, nightly-1]
kept:
  description: The names of the snapshots kept, newest first.
  type: list
  elements: str
  returned: always
  sample: [nightly-4, nightly-3]
decisions:
  description: One decision per snapshot, newest first, with the rule or safeguard that kept it.
  type: list
  elements: dict
  returned: always
  contains:
    name:
      description: The snapshot's name.
      type: str
    action:
      description: C(keep) or C(remove).
      type: str
    reason:
      description: The rule (for example C(keep-daily)) or safeguard (C(protected), C(current),
        C(ancestor-of-current), C(not-matched)) that kept it; empty for a removal.
      type: str
"""

from typing import Any  # noqa: E402 - Ansible modules document themselves first

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.virtsnap.virtsnap.plugins.module_utils.connection import (  # noqa: E402
    fail, import_virtsnap)

RULES = ("keep_last", "keep_hourly", "keep_daily", "keep_weekly", "keep_monthly", "keep_yearly")


def _lines(names: list[str]) -> str:
    return "".join(name + "\n" for name in names)


def main() -> None:
    spec: dict[str, Any] = {
        "uri": {"type": "str", "default": "qemu:///system"},
        "domain": {"type": "str", "required": True},
        "match": {"type": "str"},
    }
    spec.update({rule: {"type": "int"} for rule in RULES})
    module = AnsibleModule(argument_spec=spec, required_one_of=[list(RULES)], supports_check_mode=True)
    virtsnap = import_virtsnap(module)
    p = module.params
    policy = {key: p[key] for key in (*RULES, "match") if p[key] is not None}
    try:
        conn = virtsnap.openReadOnly(p["uri"]) if module.check_mode else virtsnap.open(p["uri"])
        try:
            dom = conn.lookupByName(p["domain"])
            if module.check_mode:
                decisions = dom.snapshotPrune(policy, virtsnap.VIR_DOMAIN_SNAPSHOT_PRUNE_DRY_RUN)
                removed = [d["name"] for d in decisions if d["action"] == "remove"]
            else:
                decisions = dom.snapshotPrune(policy, 0)
                left = set(dom.snapshotListNames())  # what is gone, not what was planned: a plan can change
                removed = [d["name"] for d in decisions if d["name"] not in left]
        finally:
            conn.close()
    except virtsnap.libvirtError as exc:
        fail(module, exc)
    names = [d["name"] for d in decisions]
    kept = [name for name in names if name not in removed]
    module.exit_json(changed=bool(removed), removed=removed, kept=kept, decisions=decisions,
                     diff={"before": _lines(names), "after": _lines(kept)})


if __name__ == "__main__":
    main()
