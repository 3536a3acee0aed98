"""The credential rule: the one place that decides whether a request may carry a credential.

A registry's credentials (an Entra-exchanged refresh token, an access token, a pull secret's user
and password) may go to the registry's own origin (scheme, host, port) and to the token realm its
challenge names when :func:`realm_trusted` admits it; to nothing else. The transport asks
:meth:`CredentialScope.allows` on every hop of every request (token, exchange, manifest, blob,
tag-list page, redirect).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

#: Realm hosts on another host that may receive a registry's basic credentials (registry API host → realms).
REALM_PAIRS: dict[str, frozenset[str]] = {"registry-1.docker.io": frozenset({"auth.docker.io"})}


Origin = tuple[str, str, int]  # (scheme, host, port)


def realm_trusted(host: str, realm: str) -> bool:
    """May the token realm a registry's challenge names receive that registry's credentials?

    Yes when it is the registry's own origin over HTTPS, or a realm host paired with the registry
    in REALM_PAIRS (Docker Hub's registry-1.docker.io → auth.docker.io, port 443); never otherwise.
    """
    origin = origin_of(realm)
    if origin is None or origin[0] != "https":
        return False
    if origin == origin_of(f"https://{host}/"):
        return True
    return origin[1] in REALM_PAIRS.get(host.lower(), ()) and origin[2] == 443


def origin_of(url: str) -> Origin | None:
    """(scheme, host, port) of a URL, the port made explicit; None when the URL has no usable origin."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        return None
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    if not scheme or not host:
        return None
    return scheme, host, port or {"https": 443, "http": 80}.get(scheme, 0)


@dataclass(frozen=True)
class CredentialScope:
    """Where a registry's credentials may go: its own origin and the token realm trusted for it.

    Every request the client sends — token, exchange, manifest, blob, tag-list page, and every
    redirect hop — asks :meth:`allows` for its URL: a request to any other origin (another host,
    another port, plain HTTP) carries no ``Authorization`` header, and a request whose body is a
    credential (an Entra or refresh token) is not sent there at all.
    """

    origins: frozenset[Origin]

    @classmethod
    def of_registry(cls, host: str, realm: str | None = None) -> CredentialScope:
        """The registry's origin, and the challenge's token realm when :func:`realm_trusted`."""
        origins = {origin_of(f"https://{host}/")}
        if realm and realm_trusted(host, realm):
            origins.add(origin_of(realm))
        return cls(frozenset(o for o in origins if o is not None))

    def allows(self, url: str) -> bool:
        origin = origin_of(url)
        return origin is not None and origin in self.origins
