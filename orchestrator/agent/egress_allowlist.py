"""Which destinations an external agent may reach through the egress proxy: `host:port` entries, each
destination spelled one canonical way (a lower-case name, an IPv4 or a bare IPv6 address in brackets),
parsed strictly; a text that is not one (hostile input, or a bad setting) is a ValueError with fixed text."""

from __future__ import annotations

import ipaddress
import re
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass

SCHEME_PORTS = {"http": 80, "https": 443}
# litellm provider prefix -> its default endpoint; any other provider needs an API base or an extra entry.
PROVIDER_ENDPOINTS = {
    "openai": "api.openai.com:443", "anthropic": "api.anthropic.com:443",
    "gemini": "generativelanguage.googleapis.com:443", "mistral": "api.mistral.ai:443",
    "groq": "api.groq.com:443", "deepseek": "api.deepseek.com:443", "openrouter": "openrouter.ai:443"}

_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_HOSTNAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*", re.ASCII)
_PORT = re.compile(r"[0-9]{1,5}", re.ASCII)


@dataclass(frozen=True)
class Endpoint:
    """A destination: `host` as it is connected to (a lower-case name, an IPv4 or a bare IPv6 address)."""

    host: str
    port: int

    @property
    def key(self) -> str:  # the canonical `host:port`, `[v6]:port`: one destination, one spelling
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_endpoint(text: str, default_port: int | None) -> Endpoint:
    """The endpoint `text` names (`host:port`, `[v6]:port`, or a bare host when `default_port` is given),
    case and address spelling normalised; ValueError (fixed text, never `text`) for anything else."""
    if text.startswith("["):
        address, bracket, after = text[1:].partition("]")
        if not bracket or "%" in address or (after and not after.startswith(":")):
            raise ValueError("malformed [IPv6] address")
        try:
            host = str(ipaddress.IPv6Address(address))
        except ValueError:
            raise ValueError("malformed [IPv6] address") from None
        port_text: str | None = after[1:] if after else None
    else:
        name, colon, port_text = text.lower().partition(":")
        if ":" in port_text:
            raise ValueError("an IPv6 address needs brackets")
        try:
            host = str(ipaddress.IPv4Address(name))
        except ValueError:
            if len(name) > 253 or not _HOSTNAME.fullmatch(name):
                raise ValueError("malformed host name") from None
            host = name
        port_text = port_text if colon else None
    if port_text is None:
        if default_port is None:
            raise ValueError("no port")
        return Endpoint(host, default_port)
    if not _PORT.fullmatch(port_text) or not 0 < int(port_text) < 65536:
        raise ValueError("port is not a number from 1 to 65535")
    return Endpoint(host, int(port_text))


def canonical_entry(entry: str, default_port: int | None) -> str:
    try:
        return parse_endpoint(entry.strip(), default_port).key
    except ValueError as exc:
        form = "host or host:port" if default_port else "host:port"
        raise ValueError(f"egress entry {entry!r} is not {form} ({exc})") from None


def allowed_hosts(api_base: str | None, model: str, extra: Iterable[str] = ()) -> frozenset[str]:
    """The canonical `host:port` entries an agent using `model` needs: the API base's host and port (its
    scheme's default port if it names none), else the default endpoint of the model's provider prefix
    (nothing for a provider not in `PROVIDER_ENDPOINTS`), plus `extra` (`host:port`, or `host` for port 443).
    ValueError (one line) for an API base that is not an http(s) URL or an entry it cannot parse."""
    entries: set[str] = set()
    if api_base:
        parts = urllib.parse.urlsplit(api_base.strip())
        scheme = parts.scheme.lower()
        if scheme not in SCHEME_PORTS or not parts.netloc:  # the message leaves the URL out: it may hold a key
            raise ValueError("the API base is not an http:// or https:// URL with a host")
        host_port = parts.netloc.rpartition("@")[2]
        try:
            entries.add(parse_endpoint(host_port, SCHEME_PORTS[scheme]).key)
        except ValueError as exc:
            raise ValueError(f"the API base's host {host_port!r} cannot be parsed ({exc})") from None
    elif "/" in model and (provider := model.strip().lower().split("/", 1)[0]) in PROVIDER_ENDPOINTS:
        entries.add(PROVIDER_ENDPOINTS[provider])
    entries.update(canonical_entry(entry, 443) for entry in extra)
    return frozenset(entries)
