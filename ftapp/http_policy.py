"""Which requests the web app answers at all: the Host and Origin checks against DNS rebinding.

A website can make a visitor's browser send requests to 127.0.0.1 by resolving a name of its
own (attacker.example) to it; the browser then treats the answers as attacker.example's. The
request still says who it was meant for: `Host: attacker.example:7860`, and for a fetch or a
form, `Origin: http://attacker.example:7860`. So the app answers only Host names it serves:

- loopback: `localhost` (and `*.localhost`), 127.0.0.0/8, ::1;
- the address it is bound to (FTAPP_HOST), and when that is every interface (0.0.0.0, ::),
  any IP address: a rebinding page always comes under a name, never a bare address;
- a Space's own host name (SPACE_HOST, set by Hugging Face);
- the names listed in FTAPP_ALLOWED_HOSTS (the public name behind a reverse proxy).

A request with an Origin is refused unless that origin's host passes the same test; "null"
(a sandboxed frame, a file:// page) is refused too. Requests without an Origin (curl,
gradio_client, the browser's own page loads) are judged by their Host alone.

Ports are not compared: a reverse proxy changes them, and a rebinding page's name is enough
to tell it apart.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from ftapp.settings import Settings

WILDCARD_ADDRESSES = ("0.0.0.0", "::", "")


def _ip(name: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(name)
    except ValueError:
        return None


def host_name(host_header: str | None) -> str | None:
    """The name part of a Host header (`name`, `name:port`, `[v6]:port`), lower-cased; None
    when it is missing or malformed."""
    if not host_header:
        return None
    host = host_header.strip().lower()
    if host.startswith("["):  # [::1]:7860
        name, closed, rest = host[1:].partition("]")
        if not closed or (rest and not (rest.startswith(":") and rest[1:].isdigit())):
            return None
        return name if _ip(name) else None
    if host.count(":") > 1:  # a bare IPv6 address
        return host if _ip(host) else None
    name, _, port = host.partition(":")
    if port and not port.isdigit():
        return None
    return name.rstrip(".") or None


def host_allowed(host_header: str | None, settings: Settings, bound_host: str) -> bool:
    name = host_name(host_header)
    if name is None:
        return False
    if name == "localhost" or name.endswith(".localhost"):
        return True
    address = _ip(name)
    if address is not None and address.is_loopback:
        return True
    bound = bound_host.strip().lower().strip("[]")
    if address is not None and bound in WILDCARD_ADDRESSES:
        return True
    return (
        name == bound
        or name in settings.allowed_hosts
        or (bool(settings.space_host) and name == settings.space_host)
    )


def origin_allowed(origin: str, settings: Settings, bound_host: str) -> bool:
    """Whether a request that names this Origin may be served (see the module docstring)."""
    try:
        parts = urlsplit(origin.strip())
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return False
    return host_allowed(parts.netloc.rpartition("@")[2], settings, bound_host)
