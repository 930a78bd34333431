#!/usr/bin/python
# -*- coding: utf-8 -*-
"""Ansible module virtsnap.virtsnap.snapshot_info: the snapshot trees of one domain or of every domain of a URI
(parents, children, current, protection, sizes), read through virtsnap's public API on a read-only connection."""

from __future__ import annotations

DOCUMENTATION = r"""
module: snapshot_info
short_description: Report domain snapshot trees with virtsnap
description:
  - Reports the snapshots of one domain, or of every domain of a connection, through virtsnap's
    libvirt-compatible API on the managed host.
  - The connection is opened read-only; nothing is ever changed.
options:
  uri:
    description: Connection URI on the managed host.
    type: str
    default: qemu:///system
  domain:
    description: Domain name. When omitted, every domain of the connection is reported.
    type: str
  sizes:
    description:
      - Report each snapshot's size (what deleting it would free, and its saved memory).
      - Where the driver cannot tell, the size is null.
    type: bool
    default: true
extends_documentation_fragment: []
attributes:
  check_mode:
    support: full
    description: The module only reads.
  diff_mode:
    support: none
    description: The module only reads.
notes:
  - virtsnap must be installed for the Python interpreter Ansible uses on the managed host.
author: virtsnap developers (@virtsnap)
"""

EXAMPLES = r"""
- name: Every domain's snapshots
  virtsnap.virtsnap.snapshot_info:
    uri: qemu:///system
  register: snapshots

- name: One domain, without sizes
  virtsnap.virtsnap.snapshot_info:
    domain: web1
    sizes: false
  register: web1

- name: Show the current snapshot of web1
  ansible.builtin.debug:
    msg: "{{ web1.domains.web1.current }}"
"""

RETURN = r"""
domains:
  description: One entry per domain name.
  type: dict
  returned: always
  contains:
    current:
      description: The current snapshot's name, or null.
      type: str
    roots:
      description: The names of the snapshots without a parent.
      type: list
      elements: str
    snapshots:
      description: Every snapshot, parents before children.
      type: list
      elements: dict
      contains:
        name:
          description: The snapshot's name.
          type: str
        parent:
          description: The parent's name, or null for a root.
          type: str
        children:
          description: The names of the snapshot's children.
          type: list
          elements: str
        state:
          description: The domain state the snapshot recorded, as its XML spells it.
          type: str
        creation_time:
          description: Creation time in Unix seconds.
          type: int
        current:
          description: Whether it is the domain's current snapshot.
          type: bool
        protected:
          description: Whether it is protected from pruning and plain deletes.
          type: bool
        size:
          description: Bytes of C(disk) (freed by deleting it) and C(memory), and whether each is exact; null
            when the driver cannot tell or I(sizes=false).
          type: dict
  sample:
    web1:
      current: pre-upgrade
      roots: [installed]
      snapshots:
        - name: installed
          parent: null
          children: [pre-upgrade]
          state: shutoff
          creation_time: 1765000000
          current: false
          protected: true
          size: {disk: 1048576, memory: 0, disk_exact: true, memory_exact: true}
"""

from typing import Any  # noqa: E402 - Ansible modules document themselves first

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.virtsnap.virtsnap.plugins.module_utils.connection import (  # noqa: E402
    fail, import_virtsnap, snapshot_size)


def _domain_info(virtsnap: Any, dom: Any, sizes: bool) -> dict[str, Any]:
    summaries = dom.listAllSnapshotSummaries(virtsnap.VIR_DOMAIN_SNAPSHOT_LIST_TOPOLOGICAL)
    current = dom.snapshotCurrent().getName() if dom.hasCurrentSnapshot() else None
    children: dict[str, list[str]] = {summary[0]: [] for summary in summaries}
    for summary in summaries:
        if summary[1] is not None:
            children[summary[1]].append(summary[0])
    snapshots = []
    for name, parent, state, created in summaries:
        snap = dom.snapshotLookupByName(name)
        snapshots.append({"name": name, "parent": parent, "children": children[name], "state": state,
                          "creation_time": created, "current": name == current,
                          "protected": bool(snap.isProtected()),
                          "size": snapshot_size(virtsnap, snap) if sizes else None})
    return {"current": current, "roots": [s["name"] for s in snapshots if s["parent"] is None],
            "snapshots": snapshots}


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "uri": {"type": "str", "default": "qemu:///system"},
            "domain": {"type": "str"},
            "sizes": {"type": "bool", "default": True},
        },
        supports_check_mode=True,
    )
    virtsnap = import_virtsnap(module)
    p = module.params
    try:
        conn = virtsnap.openReadOnly(p["uri"])
        try:
            doms = [conn.lookupByName(p["domain"])] if p["domain"] is not None else conn.listAllDomains()
            result = {dom.name(): _domain_info(virtsnap, dom, p["sizes"]) for dom in doms}
        finally:
            conn.close()
    except virtsnap.libvirtError as exc:
        fail(module, exc)
    module.exit_json(changed=False, domains=result)


if __name__ == "__main__":
    main()
