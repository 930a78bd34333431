"""libvirt_qemu for `import virtsnap.libvirt_qemu as libvirt_qemu`: libvirt-python's QEMU-specific module.

qemuAgentCommand works (QEMU driver); the monitor calls raise libvirt's VIR_ERR_NO_SUPPORT (surface_qemu.py).
"""

from __future__ import annotations

from typing import Any

from . import api, surface_qemu

globals().update(surface_qemu.CONSTANTS)
globals().update({name: getattr(surface_qemu, name) for name in surface_qemu.FUNCTIONS
                  if name != "qemuAgentCommand"})


def qemuAgentCommand(domain: Any, cmd: Any, timeout: Any, flags: Any) -> Any:  # noqa: N802 - libvirt's name
    """Send a JSON command to the domain's guest agent and return its reply (libvirt_qemu.qemuAgentCommand)."""
    return api.qemuAgentCommand(domain, cmd, timeout, flags)
