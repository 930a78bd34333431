"""Domain lifecycle on the QEMU engine: define, undefine, start, shutdown, destroy, suspend, resume, and the
guest agent pass-through.

Each function takes the connection's Context; QemuDriver delegates to them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...conf.domain_xml import DomainDef
from ...errors import ErrorCode, ErrorDomain, error
from ...flags import DomainCreate, DomainUndefine
from . import firmware, moments, tpm
from .domain import QemuDomain
from .process import kill, launch, qemu_binary

if TYPE_CHECKING:
    from .context import Context

ERR = ErrorDomain.QEMU


def define_xml(ctx: Context, xml: str, flags: int) -> DomainDef:
    """Check and store a definition; returns it as stored."""
    from . import argv

    defn = DomainDef.parse(xml, ERR)
    pre = QemuDomain.from_def(defn, filled=False)  # the subset check first: refuse what the driver cannot run
    # UEFI written out now (as libvirt >= 9.2 does at define): the stored XML names the firmware it runs
    defn = firmware.fill(defn, ctx.state_dir, argv.facts(qemu_binary(pre.arch, pre.emulator)).version)
    qdom = QemuDomain.from_def(defn)
    ctx.check_domain_paths(defn)
    if qdom.seclabel is not None:
        ctx.qemu_user(qdom)  # a DAC label names an existing unprivileged user, under qemu:///system only
    argv.check_machine(qemu_binary(qdom.arch, qdom.emulator), qdom.machine)
    with ctx.lock:
        for uuid, name, _ in ctx.store.domains():
            if name == defn.name and uuid != defn.uuid:
                raise error(ErrorCode.OPERATION_FAILED, ErrorDomain.DOMAIN,
                            f"domain '{name}' already exists with uuid {uuid}")
            if uuid == defn.uuid and name != defn.name:
                raise error(ErrorCode.OPERATION_FAILED, ErrorDomain.DOMAIN,
                            f"domain '{name}' is already defined with uuid {uuid}")
        with ctx.operation(defn.uuid, defn.name):
            made = qdom.firmware is not None and ensure_nvram(ctx, defn.uuid, qdom.firmware)
            try:  # the NVRAM is made at define, so that offline snapshots include it from the first
                ctx.store.put_domain(defn.uuid, defn.name, moments.stored(defn))
            except BaseException:
                if made and qdom.firmware is not None and qdom.firmware.nvram:
                    ctx.remove_ours(defn.uuid, [qdom.firmware.nvram])
                raise
    return defn


def ensure_nvram(ctx: Context, uuid: str, fw: firmware.Firmware) -> bool:
    """The domain's NVRAM made from its template if it does not exist (at define, or at a start after it
    went), recorded in the ledger; a user's existing file is used as it is, never written over. Whether it
    was made."""
    from ...store import ledger

    try:
        return firmware.ensure_nvram(fw, lambda fd: ledger.record(ctx.store, str(fw.nvram), fd, uuid, None,
                                                                  firmware.PURPOSE, fw.nvram_format))
    except BaseException:
        if fw.nvram:
            ctx.remove_ours(uuid, [fw.nvram])  # half made: only a file the ledger says is ours goes
        raise


def undefine(ctx: Context, uuid: str, flags: int) -> None:
    defn = ctx.domain_def(uuid)
    if flags & DomainUndefine.TPM and flags & DomainUndefine.KEEP_TPM:
        raise error(ErrorCode.OPERATION_INVALID, ERR, "cannot both keep and delete TPM state")
    with ctx.operation(uuid, defn.name) as lock:
        if ctx.rt(uuid).pid() is not None:
            raise error(ErrorCode.OPERATION_INVALID, ERR,
                        f"domain '{defn.name}' is running; destroy it before undefining it")
        count = ctx.store.snapshot_count(uuid)
        if count and not flags & DomainUndefine.SNAPSHOTS_METADATA:
            raise error(ErrorCode.OPERATION_INVALID, ERR, f"cannot delete inactive domain with {count} snapshots")
        qdom = QemuDomain.from_def(defn)
        nvram = firmware.undefine_nvram(ctx.store, uuid, qdom, flags)
        ctx.store.delete_domain(uuid)
        # libvirt removes an emulated TPM's state unless kept (--keep-tpm), or, with <backend
        # persistent_state='yes'>, only when asked (--tpm); after every refusal, so a refused undefine keeps it
        persistent = qdom.hw.tpm is not None and qdom.hw.tpm.persistent
        if (flags & DomainUndefine.TPM) if persistent else not flags & DomainUndefine.KEEP_TPM:
            tpm.remove_state(ctx.store, ctx.state_dir, uuid)
        if nvram is not None:  # --nvram: the domain's own store goes with it (the ledger's rule)
            ctx.remove_ours(uuid, [nvram])
        ctx.store.ledger_release(uuid)  # the files stay, and are the user's now
        ctx.trees.pop(uuid, None)
        lock.discard()  # the lock file goes with its domain


def boot(ctx: Context, uuid: str, defn: DomainDef, paused: bool, incoming: bool = False) -> None:
    dom = QemuDomain.from_def(defn)
    ctx.check_domain_paths(defn)  # a definition stored before these checks existed
    user = ctx.qemu_user(dom)
    if dom.firmware is not None:
        ensure_nvram(ctx, uuid, dom.firmware)
    moments.refuse_probing(dom)
    ctx.hand_over(uuid, dom, user)
    tpm_state = tpm.prepare(ctx.store, ctx.state_dir, uuid, dom.hw.tpm, user) if dom.hw.tpm else None
    launch(dom, ctx.rt(uuid), paused=paused, incoming=incoming, user=user, tpm_state=tpm_state)


def start(ctx: Context, uuid: str, flags: int) -> None:
    defn = ctx.domain_def(uuid)
    with ctx.operation(uuid, defn.name):
        if ctx.rt(uuid).pid() is not None:
            raise error(ErrorCode.OPERATION_INVALID, ERR, "domain is already running")
        if flags & DomainCreate.START_RESET_NVRAM:
            firmware.reset_nvram(ctx.store, uuid, QemuDomain.from_def(defn).firmware)
        boot(ctx, uuid, defn, paused=bool(flags & DomainCreate.START_PAUSED))


def shutdown(ctx: Context, uuid: str, flags: int) -> None:
    defn = ctx.domain_def(uuid)
    with ctx.operation(uuid, defn.name):
        ctx.require_running(uuid)
        with ctx.monitor(uuid) as mon:
            mon.execute("system_powerdown")


def destroy(ctx: Context, uuid: str, flags: int) -> None:
    defn = ctx.domain_def(uuid)
    with ctx.operation(uuid, defn.name):
        ctx.require_running(uuid)
        kill(ctx.rt(uuid))


def suspend(ctx: Context, uuid: str) -> None:
    defn = ctx.domain_def(uuid)
    with ctx.operation(uuid, defn.name):
        ctx.require_running(uuid)
        with ctx.monitor(uuid) as mon:
            mon.execute("stop")


def resume(ctx: Context, uuid: str) -> None:
    defn = ctx.domain_def(uuid)
    with ctx.operation(uuid, defn.name):
        ctx.require_running(uuid)
        with ctx.monitor(uuid) as mon:
            mon.execute("cont")


def agent_command(ctx: Context, uuid: str, command: str, timeout: float) -> str:
    """libvirt_qemu.qemuAgentCommand: pass one JSON command to the guest agent."""
    defn = ctx.domain_def(uuid)
    qdom = QemuDomain.from_def(defn)
    if qdom.agent_socket is None:
        raise error(ErrorCode.CONFIG_UNSUPPORTED, ERR, f"domain '{defn.name}' has no guest agent channel")
    ctx.require_running(uuid)
    path = qdom.agent_socket or str(ctx.rt(uuid).agent)
    from .agent import Agent

    with Agent(path, timeout=timeout) as agent:
        return agent.command_json(command)
