"""REDEFINE of snapshot metadata, shared by every driver that owns its metadata (libvirt's RedefinePrep).

Validates the definition against the tree and the domain, then yields the moment to link: an existing
one (children kept, unlinked from its old parent) or a new one. Nothing is linked or made current here.
"""

from __future__ import annotations

from collections.abc import Callable

from ..errors import ErrorCode, ErrorDomain, error
from .domain_xml import DomainDef
from .snapshot_xml import Location, SnapshotDef, SnapshotState, align_disks
from .tree import Moment, SnapshotTree


def redefine(tree: SnapshotTree, domain: DomainDef, defn: SnapshotDef,
             is_regular_file: Callable[[str], bool]) -> Moment:
    """Check a redefinition of `defn` for `domain` and return its (unlinked) moment; raises before any change."""
    tree.check_cycles(defn.name, defn.parent)
    other = tree.get(defn.name)
    old: SnapshotDef | None = other.defn if other is not None else None
    snap_err = ErrorDomain.DOMAIN_SNAPSHOT
    if defn.domain is not None and defn.domain.uuid != domain.uuid:
        raise error(ErrorCode.INVALID_ARG, snap_err,
                    f"definition for snapshot {defn.name} must use uuid {domain.uuid}")
    if old is not None:
        if old.state.is_online != defn.state.is_online:
            raise error(ErrorCode.INVALID_ARG, snap_err,
                        f"cannot change between online and offline snapshot state in snapshot {defn.name}")
        if (old.state == SnapshotState.DISK_SNAPSHOT) != (defn.state == SnapshotState.DISK_SNAPSHOT):
            raise error(ErrorCode.INVALID_ARG, snap_err,
                        f"cannot change between disk only and full system in snapshot {defn.name}")
        if old.domain is not None and defn.domain is not None:
            problem = abi_difference(old.domain, defn.domain)
            if problem is not None:
                raise error(ErrorCode.CONFIG_UNSUPPORTED, ErrorDomain.DOMAIN, problem)
    external = defn.state == SnapshotState.DISK_SNAPSHOT or defn.is_external
    align_disks(defn, Location.EXTERNAL if external else Location.INTERNAL, uniform_internal=True,
                existing=old.domain if old is not None else None, is_regular_file=is_regular_file)
    if other is None:
        return tree.add(Moment(defn.name))
    if defn.domain is None:
        defn.domain = old.domain if old is not None else None
    tree.drop_parent(other)
    return other


def abi_difference(current: DomainDef, target: DomainDef) -> str | None:
    """A reduced virDomainDefCheckABIStability: the guest-visible facts a live revert cannot change."""
    if current.type != target.type:
        return f"Target domain virt type {target.type} does not match source {current.type}"
    if current.memory_kib != target.memory_kib:
        return (f"Target domain max memory {target.memory_kib} does not match source "
                f"{current.memory_kib}")
    if current.vcpus != target.vcpus:
        return f"Target domain vCPU max {target.vcpus} does not match source {current.vcpus}"
    src, dst = current.disks(), target.disks()
    if len(src) != len(dst):
        return f"Target domain disk count {len(dst)} does not match source {len(src)}"
    for a, b in zip(src, dst, strict=False):
        if a.target != b.target:
            return f"Target disk {b.target} does not match source {a.target}"
    return None
