"""The rpc wire format, shared by the server (rpc/server.py) and the ssh driver (drivers/remote.py):
JSON lines, a hello line from the server first, then requests, responses and cancels."""

from __future__ import annotations

import json
from typing import Any

# Bumped on any incompatible change; the client refuses a server that says another number.
PROTOCOL = 1
HELLO = "virtsnap-rpc"  # the hello line: {"virtsnap-rpc": PROTOCOL, "version": "<virtsnap version>"}
# Requests:  {"id": N, "method": NAME, "params": [...], "progress": true}  (progress optional: the caller listens)
# Progress:  {"id": N, "progress": [WHAT, DONE, TOTAL]}  zero or more before the response, only when asked
# Responses: {"id": N, "result": ...} or {"id": N, "error": {"code": C, "domain": D, "message": M},
#            "interrupted": bool}
# Cancel:    {"cancel": N}  the server interrupts call N as Ctrl-C would (SIGINT to itself)
MAX_LINE = 64 * 1024 * 1024  # a line longer than this is a protocol error, not a memory exhaustion


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


def decode(line: bytes) -> dict[str, Any]:
    """One message; anything but a JSON object raises ValueError."""
    value = json.loads(line)
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    return value
