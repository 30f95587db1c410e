"""The bearer token, the connection file that carries it, and the loopback rule.

The service listens on 127.0.0.1 and every endpoint but ``/health`` wants ``Authorization: Bearer <token>``.
The token is random per start and reaches clients only through the connection file, which only the user can
read (mode 0600): another local user, or a web page making requests to localhost, cannot drive the service.

A web page can still make the user's browser talk to the service through a name of its own that it points at
127.0.0.1 (DNS rebinding); such requests carry that name in their ``Host`` header. So the service answers only
requests whose ``Host`` is a loopback name or address (``127.0.0.1``, ``localhost``, ``[::1]``, any port), or
the address it is bound to (:func:`host_allowed`).
"""
from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import secrets
import socket
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["new_token", "token_matches", "write_connection_file", "remove_connection_file", "is_loopback",
           "resolve_host", "HostRule", "host_allowed"]


def new_token() -> str:
    """A fresh random token (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


def token_matches(header: str | None, token: str) -> bool:
    """True when an ``Authorization`` header value carries ``token`` (constant-time comparison)."""
    if not header:
        return False
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return secrets.compare_digest(given.strip().encode("utf-8", "replace"), token.encode())


def resolve_host(host: str) -> str:
    """``'localhost'`` -> ``'127.0.0.1'`` (one address, so the READY line and the socket agree); others as given."""
    return "127.0.0.1" if host.strip().lower() == "localhost" else host.strip()


def is_loopback(host: str) -> bool:
    """True for loopback addresses (127.0.0.0/8, ::1); False for anything else, names included."""
    try:
        return ipaddress.ip_address(resolve_host(host)).is_loopback
    except ValueError:
        return False


class HostRule:
    """Which ``Host`` header values the service answers: loopback names and addresses, the bound address, and
    with ``allow_remote`` on a wildcard address (0.0.0.0, ::) any IP address and this machine's names.

    Parameters
    ----------
    bound : the address the socket is bound to.
    allow_remote : the service was started with ``--allow-remote``.
    """

    def __init__(self, bound: str, allow_remote: bool = False) -> None:
        self.names = {"localhost", _bare(bound).lower()}
        self.any_address = False
        if allow_remote and _bare(bound) in ("0.0.0.0", "::"):
            self.any_address = True
            self.names |= {socket.gethostname().lower(), socket.getfqdn().lower()}

    def allows(self, host: str) -> bool:
        name = _host_name(host)
        if name is None:
            return False
        if name in self.names:
            return True
        try:
            address = ipaddress.ip_address(name)
        except ValueError:
            return False  # a name that is not ours: what a DNS-rebinding page sends
        return address.is_loopback or self.any_address


def _bare(host: str) -> str:
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def _host_name(header: str) -> str | None:
    """The name or address of a Host header value (``[::1]:8765`` -> ``::1``); None when malformed."""
    text = header.strip().lower()
    if text.startswith("["):
        name, sep, rest = text[1:].partition("]")
        if not sep or (rest and not (rest.startswith(":") and rest[1:].isdigit())):
            return None
        return name or None
    name, sep, port = text.partition(":")
    if sep and not port.isdigit():
        return None  # a bare IPv6 address without brackets, or a malformed port
    return name or None


def host_allowed(header: str | None, rule: HostRule) -> bool:
    """True when a request's ``Host`` header names this service (see :class:`HostRule`); False when it is
    missing, empty, malformed or names another host."""
    return bool(header) and rule.allows(header)


def write_connection_file(path: str | os.PathLike, info: dict[str, Any]) -> Path:
    """Write ``info`` (url, token, pid, ...) as JSON readable by the user only (0600), atomically.

    The temporary file is created with mode 0600 before any byte of the token is written, so the token is
    never readable by others, not even for a moment.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.stem}.", suffix=".part", dir=final.parent)  # mode 0600
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            if hasattr(os, "fchmod"):
                os.fchmod(fh.fileno(), 0o600)
            json.dump(info, fh, indent=2)
            fh.write("\n")
        os.replace(tmp, final)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return final


def remove_connection_file(path: str | os.PathLike, token: str) -> None:
    """Remove the connection file if it still holds ``token`` (a newer service may have replaced it)."""
    path = Path(path)
    try:
        if json.loads(path.read_text(encoding="utf-8")).get("token") == token:
            path.unlink()
    except (OSError, ValueError, AttributeError):
        pass


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host``:``port`` (port 0: a free one chosen by the system)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        if os.name != "nt":  # on Windows SO_REUSEADDR would let a second server steal the port
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # accepted connections inherit this: without it, small responses on a kept-alive connection
        # (QNetworkAccessManager, requests) wait ~40 ms for a delayed ACK (Nagle)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock
