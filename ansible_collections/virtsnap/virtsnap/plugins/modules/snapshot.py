#!/usr/bin/python
"""Ansible module virtsnap.virtsnap.snapshot: one domain snapshot present, absent or reverted to, through
virtsnap's public Python API on the managed host (fan-out, forks and failures are Ansible's)."""

from __future__ import annotations

DOCUMENTATION = r"""
module: snapshot
short_description: Create, delete or revert to a domain snapshot with virtsnap
description:
  - Manages one snapshot of one domain through virtsnap's libvirt-compatible API on the managed host.
options:
  uri:
    description: Connection URI on the managed host.
    type: str
    default: qemu:///system
  domain:
    description: Domain name.
    type: str
    required: true
  name:
    description: Snapshot name.
    type: str
    required: true
  description:
    description: Snapshot description (present only).
    type: str
  state:
    description: C(present) creates it, C(absent) deletes it, C(reverted) reverts the domain to it.
    type: str
    choices: [present, absent, reverted]
    default: present
  children:
    description: With C(absent), delete the snapshot's descendants too.
    type: bool
    default: false
  disk_only:
    description: Create a disk-only snapshot.
    type: bool
    default: false
  quiesce:
    description: Freeze guest filesystems during a disk-only snapshot.
    type: bool
    default: false
  live:
    description: Keep the guest running while its memory is saved.
    type: bool
    default: false
  memory:
    description: Save memory state of a running domain (the default for a running domain, as in libvirt).
    type: bool
    default: true
author: virtsnap developers (@virtsnap)
"""

EXAMPLES = r"""
- name: Snapshot before the upgrade
  virtsnap.virtsnap.snapshot:
    domain: web1
    name: pre-upgrade
    description: before the patch window
"""

RETURN = r"""
snapshot:
  description: The snapshot's name, parent, state and whether it is current (absent when deleted).
  type: dict
  returned: when the snapshot exists afterwards
"""

from typing import Any  # noqa: E402 - Ansible modules document themselves first
from xml.sax.saxutils import escape  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402


def _details(snap: Any) -> dict[str, Any]:
    try:
        parent = snap.getParent().getName()
    except Exception:  # a root snapshot has no parent (VIR_ERR_NO_DOMAIN_SNAPSHOT)
        parent = None
    return {"name": snap.getName(), "parent": parent, "current": bool(snap.isCurrent()),
            "xml": snap.getXMLDesc()}


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "uri": {"type": "str", "default": "qemu:///system"},
            "domain": {"type": "str", "required": True},
            "name": {"type": "str", "required": True},
            "description": {"type": "str"},
            "state": {"type": "str", "default": "present", "choices": ["present", "absent", "reverted"]},
            "children": {"type": "bool", "default": False},
            "disk_only": {"type": "bool", "default": False},
            "quiesce": {"type": "bool", "default": False},
            "live": {"type": "bool", "default": False},
            "memory": {"type": "bool", "default": True},
        },
        supports_check_mode=True,
    )
    try:
        import virtsnap
    except ImportError:
        module.fail_json(msg="virtsnap is not installed for this host's Python interpreter")
    p = module.params
    try:
        conn = virtsnap.openReadOnly(p["uri"]) if module.check_mode else virtsnap.open(p["uri"])
        dom = conn.lookupByName(p["domain"])
        existing = dom.snapshotLookupByName(p["name"]) if p["name"] in dom.snapshotListNames() else None
        if p["state"] == "present":
            if existing is not None:
                old = existing.getXMLDesc()
                wanted = p["description"]
                if wanted is not None and f"<description>{escape(wanted)}</description>" not in old:
                    module.fail_json(msg=f"snapshot {p['name']} exists with another description")
                module.exit_json(changed=False, snapshot=_details(existing))
            if module.check_mode:
                module.exit_json(changed=True)
            desc = f"<description>{escape(p['description'])}</description>" if p["description"] else ""
            flags = 0
            if p["disk_only"]:
                flags |= virtsnap.VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY  # type: ignore[attr-defined]
            if p["quiesce"]:
                flags |= virtsnap.VIR_DOMAIN_SNAPSHOT_CREATE_QUIESCE  # type: ignore[attr-defined]
            if p["live"]:
                flags |= virtsnap.VIR_DOMAIN_SNAPSHOT_CREATE_LIVE  # type: ignore[attr-defined]
            memory = "" if p["memory"] or p["disk_only"] else "<memory snapshot='no'/>"
            snap = dom.snapshotCreateXML(
                f"<domainsnapshot><name>{escape(p['name'])}</name>{desc}{memory}</domainsnapshot>", flags)
            module.exit_json(changed=True, snapshot=_details(snap),
                             diff={"before": "", "after": p["name"] + "\n"})
        if p["state"] == "absent":
            if existing is None:
                module.exit_json(changed=False)
            if not module.check_mode:
                existing.delete(virtsnap.VIR_DOMAIN_SNAPSHOT_DELETE_CHILDREN  # type: ignore[attr-defined]
                                if p["children"] else 0)
            module.exit_json(changed=True, diff={"before": p["name"] + "\n", "after": ""})
        if existing is None:
            module.fail_json(msg=f"domain {p['domain']} has no snapshot {p['name']}")
        if not module.check_mode:
            dom.revertToSnapshot(existing)
        module.exit_json(changed=True, snapshot=_details(existing))  # a revert always changes, as vmware.vmware's
    except virtsnap.libvirtError as exc:
        module.fail_json(msg=str(exc), code=exc.get_error_code(), domain=exc.get_error_domain())


if __name__ == "__main__":
    main()
