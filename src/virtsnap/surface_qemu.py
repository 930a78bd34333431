"""libvirt_qemu 9.0's surface, generated: every VIR_* constant, class and method with its signature.

Written by scripts/gen_libvirt_surface.py from libvirt-qemu-api.xml and python3-libvirt's libvirt_qemu.py; do not edit.
A method that virtsnap does not implement raises libvirt's VIR_ERR_NO_SUPPORT error naming the C function.
"""

# ruff: noqa: E501, N802, N803, B006
from __future__ import annotations

from .dispatch import not_supported

TYPE_CHECKING = False  # typing costs ~3 ms of a cold start: what this module takes from it is the checker's
if TYPE_CHECKING:
    from typing import Any

CONSTANTS: dict[str, int | str] = {
    'VIR_CONNECT_DOMAIN_QEMU_MONITOR_EVENT_REGISTER_NOCASE': 2,
    'VIR_CONNECT_DOMAIN_QEMU_MONITOR_EVENT_REGISTER_REGEX': 1,
    'VIR_DOMAIN_QEMU_AGENT_COMMAND_BLOCK': -2,
    'VIR_DOMAIN_QEMU_AGENT_COMMAND_DEFAULT': -1,
    'VIR_DOMAIN_QEMU_AGENT_COMMAND_MIN': -2,
    'VIR_DOMAIN_QEMU_AGENT_COMMAND_NOWAIT': 0,
    'VIR_DOMAIN_QEMU_AGENT_COMMAND_SHUTDOWN': 60,
    'VIR_DOMAIN_QEMU_MONITOR_COMMAND_DEFAULT': 0,
    'VIR_DOMAIN_QEMU_MONITOR_COMMAND_HMP': 1,
}


def qemuMonitorEventDeregister(conn: Any, callbackID: Any) -> Any:
    raise not_supported('virConnectDomainQemuMonitorEventDeregister', 20)


def qemuMonitorEventRegister(conn: Any, dom: Any, event: Any, cb: Any, opaque: Any, flags: Any = 0) -> Any:
    raise not_supported('virConnectDomainQemuMonitorEventRegister', 20)


def qemuMonitorCommandWithFiles(domain: Any, cmd: Any, files: Any = [], flags: Any = 0) -> Any:
    raise not_supported('virDomainQemuMonitorCommandWithFiles', 20)


def qemuAgentCommand(domain: Any, cmd: Any, timeout: Any, flags: Any) -> Any:
    raise not_supported('virDomainQemuAgentCommand', 20)


def qemuAttach(conn: Any, pid_value: Any, flags: Any) -> Any:
    raise not_supported('virDomainQemuAttach', 20)


def qemuMonitorCommand(domain: Any, cmd: Any, flags: Any) -> Any:
    raise not_supported('virDomainQemuMonitorCommand', 20)


FUNCTIONS = ('qemuMonitorEventDeregister', 'qemuMonitorEventRegister', 'qemuMonitorCommandWithFiles', 'qemuAgentCommand', 'qemuAttach', 'qemuMonitorCommand')
CLASSES = ()

# 'class.method' -> (the C function it calls, the error domain its errors carry)
C_NAMES: dict[str, tuple[str, int]] = {
}
