"""The `virtsnap serve` command: options, the listen address policy (loopback unless --allow-remote), the
access token printed at start, and uvicorn serving the app until interrupted."""

from __future__ import annotations

import argparse
import ipaddress
import os
import secrets
import socket
import sys
from collections.abc import Sequence

import virtsnap

from . import missing_extra

DEFAULT_LISTEN = "127.0.0.1:8470"


class ServeError(Exception):
    """A refused option: printed as one `error:` line, nothing started."""


def parse_listen(text: str) -> tuple[str, int]:
    """HOST:PORT with an IPv6 host in brackets ([::1]:8470); the port may be 0 (any free port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ServeError(f"invalid argument: --listen must be HOST:PORT, not {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name other than localhost: it may resolve anywhere


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="virtsnap serve", description="A web view of snapshot trees. Prints a URL with an access token.")
    p.add_argument("-c", "--connect", metavar="URI", help="hypervisor connection URI (as for virtsnap -c)")
    p.add_argument("--listen", default=DEFAULT_LISTEN, metavar="HOST:PORT",
                   help=f"address to listen on (default {DEFAULT_LISTEN}; port 0 picks a free one)")
    p.add_argument("-r", "--readonly", action="store_true",
                   help="open the connection read-only; the page offers no actions")
    p.add_argument("--allow-remote", action="store_true",
                   help="allow a non-loopback --listen address (plain HTTP: the token crosses the network)")
    return p


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ServeError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    sock.listen(128)
    return sock


def main(argv: Sequence[str], uri: str | None = None, readonly: bool = False) -> int:
    """Run the server until interrupted; the exit status. `uri` and `readonly` come from virtsnap's global
    options when given before the command (virtsnap -c URI -r serve)."""
    args = parser().parse_args(list(argv))
    problem = missing_extra()
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return 1
    import uvicorn  # the extra is there

    from .app import LOOPBACK_NAMES, create_app

    uri = args.connect or uri or os.environ.get("VIRSH_DEFAULT_CONNECT_URI") or None
    readonly = args.readonly or readonly
    try:
        host, port = parse_listen(args.listen)
        if not is_loopback(host) and not args.allow_remote:
            raise ServeError(f"refusing to listen on {host}: not a loopback address, and the page is plain HTTP "
                             "(use an SSH tunnel, or pass --allow-remote)")
        conn = virtsnap.openReadOnly(uri) if readonly else virtsnap.open(uri)
        sock = bind(host, port)
    except ServeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except virtsnap.libvirtError as exc:
        print(f"error: failed to connect to the hypervisor\nerror: {exc.get_error_message()}", file=sys.stderr)
        return 1
    # Errors reach the page as results; libvirt's default line on stderr for each would only be noise here.
    virtsnap.registerErrorHandler(lambda ctx, err: None, None)
    token = secrets.token_urlsafe(32)
    hosts = None if args.allow_remote else LOOPBACK_NAMES | {host if ":" not in host else f"[{host}]"}
    app = create_app(conn, token, readonly=readonly, hosts=hosts)
    shown = f"[{host}]" if ":" in host else host
    bound_port = sock.getsockname()[1]
    mode = " (read-only)" if readonly else ""
    # The token is printed once, as Jupyter does; uvicorn's access log is off because URLs carry it.
    print(f"virtsnap serve: {conn.getURI()}{mode}\n    http://{shown}:{bound_port}/?token={token}", flush=True)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
        conn.close()
    return 0
