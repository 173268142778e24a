"""Which FHIR servers the service may read: the caller names `fhirServer`, so it is checked.

- `CDS_FHIR_SERVERS` (origins) limits every call, development mode included;
- a trusted client's `fhirServers` (origins, in its trusted-clients entry) limits its calls;
- cloud metadata endpoints and link-local addresses are never read, whatever the lists say:
  checked on the URL here, and again on every address the host name resolves to when a
  connection is made (fhir/client.py), so a name that resolves to one is refused too.

A refusal is a reason in words fit for an error body; the service then answers as for any
data it could not get (412 when the patient or conditions were needed).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

_DEFAULT_PORTS = {"http": 80, "https": 443}
# Host names of cloud metadata services (most also answer on a link-local address).
_METADATA_HOSTS = frozenset(
    {
        "metadata",
        "metadata.google.internal",
        "metadata.goog",
        "instance-data",
        "instance-data.ec2.internal",
    }
)
# Metadata services outside the link-local ranges (AWS IPv6, Alibaba Cloud).
_METADATA_ADDRESSES = frozenset(
    {ipaddress.ip_address("fd00:ec2::254"), ipaddress.ip_address("100.100.100.200")}
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")

REFUSED_ADDRESS = "the fhirServer is a cloud metadata or link-local address, which is never read"


def origin(url: str) -> str | None:
    """`scheme://host[:port]` in lower case, the default port left out; None if not http(s)."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower().rstrip(".")
    if scheme not in _DEFAULT_PORTS or not host:
        return None
    shown = f"[{host}]" if ":" in host else host
    return (
        f"{scheme}://{shown}"
        if port in (None, _DEFAULT_PORTS[scheme])
        else (f"{scheme}://{shown}:{port}")
    )


def is_forbidden_address(address: str) -> bool:
    """A link-local or cloud metadata IP address (IPv4-mapped and NAT64 forms included)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone
    except ValueError:
        return False
    candidates = [ip]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            candidates.append(ip.ipv4_mapped)
        if ip in _NAT64:
            candidates.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return any(c.is_link_local or c in _METADATA_ADDRESSES for c in candidates)


def is_forbidden_host(host: str) -> bool:
    host = host.lower().rstrip(".").strip("[]")
    return host in _METADATA_HOSTS or is_forbidden_address(host)


@dataclass(frozen=True)
class FhirServerPolicy:
    """The FHIR server origins every caller may use; None: any (except forbidden hosts)."""

    allowed: frozenset[str] | None = None

    @classmethod
    def of(cls, origins: Iterable[str] | None) -> FhirServerPolicy:
        return cls(None if origins is None else frozenset(origins))

    def refusal(self, base_url: str, client_origins: Iterable[str] | None = None) -> str | None:
        """Why `base_url` may not be read for a caller allowed `client_origins` (None: any);
        None when it may."""
        where = origin(base_url)
        if where is None:
            return "the fhirServer is not an http(s) URL"
        if is_forbidden_host(urlsplit(where).hostname or ""):
            return REFUSED_ADDRESS
        if self.allowed is not None and where not in self.allowed:
            return "the fhirServer is not one this service reads from (CDS_FHIR_SERVERS)"
        if client_origins is not None and where not in set(client_origins):
            return (
                "the fhirServer is not one of this client's FHIR servers "
                "(fhirServers in its trusted-clients entry)"
            )
        return None
