"""Container image references: the distribution reference grammar, with Docker Hub normalisation.

Grammar (github.com/distribution/reference, regexp.go + normalize.go)::

    reference  := name [ ":" tag ] [ "@" digest ]
    name       := [domain "/"] remote-name
    domain     := host [ ":" port ]            host: DNS name or [IPv6]
    remote-name:= path-component ( "/" path-component )*
    path-component := [a-z0-9]+ ( ( "." | "_" | "__" | "-"+ ) [a-z0-9]+ )*
    tag        := [\\w][\\w.-]{0,127}
    digest     := algorithm ":" hex            (sha256: 64 hex, sha512: 128 hex)

The first component is a registry only if it contains ``.`` or ``:``, is ``localhost``, or has an
upper-case letter; otherwise the name is on Docker Hub (``nginx`` → ``docker.io/library/nginx``).
``index.docker.io`` and ``registry-1.docker.io`` are spelled ``docker.io``. A name without tag or
digest gets ``latest``.

Public interface::

    parse_reference(text: str) -> ImageRef        # raises ReferenceError (an InputError)
    ImageRef(registry, repository, tag, digest, original)
        .reference  -> digest if present, else tag
        .name       -> "registry/repository"
        str(ref)    -> the full normalised name ("docker.io/library/nginx:latest")
    DOCKER_HUB = "docker.io"; DOCKER_HUB_ALIASES
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from shared.errors import InputError

DOCKER_HUB = "docker.io"
DOCKER_HUB_ALIASES: frozenset[str] = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})
#: The host that serves Docker Hub's registry API.
DOCKER_HUB_API_HOST = "registry-1.docker.io"
NAME_TOTAL_LENGTH_MAX = 255

_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_REMOTE_NAME = rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_IPV6 = r"\[(?:[a-fA-F0-9:]+)\]"
_HOST = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|{_IPV6})"
_DOMAIN = rf"{_HOST}(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"

_DOMAIN_RE = re.compile(rf"^{_DOMAIN}$", re.ASCII)
_REMOTE_RE = re.compile(rf"^{_REMOTE_NAME}$", re.ASCII)
_TAG_RE = re.compile(rf"^{_TAG}$", re.ASCII)
_DIGEST_RE = re.compile(rf"^{_DIGEST}$", re.ASCII)
_HEX64_RE = re.compile(r"^[a-f0-9]{64}$", re.ASCII)
_DIGEST_HEX_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}


class ReferenceError(InputError):
    """An image reference that does not follow the distribution reference grammar."""

    def __init__(self, text: str, reason: str) -> None:
        shown = text if len(text) <= 300 else text[:300] + "…"
        super().__init__(f"invalid image reference {shown!r}: {reason}")
        self.text = text
        self.reason = reason


@dataclass(frozen=True)
class ImageRef:
    registry: str  # host[:port], lower-case; "docker.io" for Docker Hub
    repository: str
    tag: str | None
    digest: str | None
    original: str

    @property
    def reference(self) -> str:
        """What the registry is asked for: the digest if present, else the tag."""
        if self.digest:
            return self.digest
        assert self.tag is not None
        return self.tag

    @property
    def name(self) -> str:
        return f"{self.registry}/{self.repository}"

    @property
    def key(self) -> tuple[str, str, str]:
        """One unique pull: (registry, repository, tag-or-digest)."""
        return (self.registry, self.repository, self.reference)

    @property
    def api_host(self) -> str:
        """The host[:port] that serves the registry API (``registry-1.docker.io`` for Docker Hub)."""
        return DOCKER_HUB_API_HOST if self.registry == DOCKER_HUB else self.registry

    def __str__(self) -> str:
        out = self.name
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out


def _split_domain(name: str) -> tuple[str, str]:
    slash = name.find("/")
    first = name[:slash] if slash >= 0 else ""
    if slash < 0 or (not any(c in first for c in ".:") and first != "localhost" and first.lower() == first):
        domain, remainder = DOCKER_HUB, name
    else:
        domain, remainder = first, name[slash + 1 :]
    if domain.lower() in DOCKER_HUB_ALIASES:
        domain = DOCKER_HUB
    if domain == DOCKER_HUB and "/" not in remainder:
        remainder = f"library/{remainder}"
    return domain, remainder


def parse_reference(text: str) -> ImageRef:
    """Parse and normalise an image reference; raise :class:`ReferenceError` naming what is wrong."""
    if not isinstance(text, str):
        raise ReferenceError(repr(text), "not a string")
    if text == "":
        raise ReferenceError(text, "empty reference")
    if text != text.strip() or any(c.isspace() for c in text):
        raise ReferenceError(text, "contains white space")
    if not text.isascii():
        raise ReferenceError(text, "contains non-ASCII characters")
    if _HEX64_RE.match(text):
        raise ReferenceError(text, "a 64-character hexadecimal string is an image ID, not a repository name")

    rest, digest = text, None
    if "@" in rest:
        rest, _, digest = rest.partition("@")
        if not _DIGEST_RE.match(digest):
            raise ReferenceError(text, f"digest {digest!r} is not algorithm:hex")
        algorithm, _, hexpart = digest.partition(":")
        want = _DIGEST_HEX_LENGTHS.get(algorithm)
        if want is not None and (len(hexpart) != want or hexpart.lower() != hexpart):
            raise ReferenceError(text, f"{algorithm} digest must be {want} lower-case hex characters")
    tag = None
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > slash:
        rest, tag = rest[:colon], rest[colon + 1 :]
        if not _TAG_RE.match(tag):
            raise ReferenceError(text, f"tag {tag!r} is not valid (letters, digits, _ . -, at most 128)")
    if not rest:
        raise ReferenceError(text, "no repository name")
    if len(rest) > NAME_TOTAL_LENGTH_MAX:
        raise ReferenceError(text, f"repository name longer than {NAME_TOTAL_LENGTH_MAX} characters")

    domain, remainder = _split_domain(rest)
    if not _DOMAIN_RE.match(domain):
        raise ReferenceError(text, f"registry {domain!r} is not a valid host[:port]")
    if remainder.lower() != remainder:
        raise ReferenceError(text, f"repository name {remainder!r} must be lower-case")
    if not _REMOTE_RE.match(remainder):
        raise ReferenceError(
            text,
            f"repository name {remainder!r} is not valid (lower-case letters, digits, separators . _ __ -)",
        )
    if tag is None and digest is None:
        tag = "latest"
    return ImageRef(registry=domain.lower(), repository=remainder, tag=tag, digest=digest, original=text)
