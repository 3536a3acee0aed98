"""Image references parsed as github.com/distribution/reference parses them (what kubelet and
containerd accept, and how they normalise a name).

Written from distribution's grammar independently of the product's ``shared/reference.py``, on
purpose: the simulated kubelet is the oracle the product is tested against, so it shares none of the
product's parsing. The regular expressions look alike because both transcribe the same grammar.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

ACR_SUFFIXES = (".azurecr.io", ".azurecr.cn", ".azurecr.de", ".azurecr.us")

# --- image references (github.com/distribution/reference) --------------------------------------

_ALNUM = r"[a-z0-9]+"
_SEP = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEP}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_REFERENCE = re.compile(
    rf"^((?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*)(?::({_TAG}))?(?:@({_DIGEST}))?$"
)
_IDENTIFIER = re.compile(r"^[a-f0-9]{64}$")


class ReferenceError_(ValueError):
    pass


@dataclass(frozen=True)
class ImageRef:
    written: str  # as in the pod spec
    with_tag: str  # kubelet's applyDefaultImageTag result (what events quote)
    domain: str  # docker.io for Docker Hub
    path: str  # library/nginx
    tag: str | None
    digest: str | None

    @property
    def name(self) -> str:
        return f"{self.domain}/{self.path}"

    @property
    def normalized(self) -> str:
        """containerd's name for it: docker.io/library/nginx:1.27"""
        out = self.name
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out

    @property
    def reference(self) -> str:
        return self.digest or self.tag or "latest"

    @property
    def api_host(self) -> str:
        return "registry-1.docker.io" if self.domain == "docker.io" else self.domain


def parse_image(image: str) -> ImageRef:
    """distribution's ParseNormalizedNamed + kubelet's default tag; ReferenceError_ with kubelet's text."""

    def fail(reason: str) -> ReferenceError_:
        return ReferenceError_(f"couldn't parse image reference {json.dumps(image)}: {reason}")

    if _IDENTIFIER.match(image):
        raise fail(f"invalid repository name ({image}), cannot specify 64-byte hexadecimal strings")
    i = image.find("/")
    if i == -1 or (
        not any(ch in image[:i] for ch in ".:")
        and image[:i] != "localhost"
        and image[:i].lower() == image[:i]
    ):
        domain, remainder = "docker.io", image
    else:
        domain, remainder = image[:i], image[i + 1 :]
    if domain == "index.docker.io":
        domain = "docker.io"
    if domain == "docker.io" and "/" not in remainder:
        remainder = "library/" + remainder
    remote = remainder.split(":", 1)[0] if ":" in remainder.split("@", 1)[0] else remainder.split("@", 1)[0]
    if remote.lower() != remote:
        raise fail("invalid reference format: repository name must be lowercase")
    m = _REFERENCE.match(f"{domain}/{remainder}")
    if not m:
        raise fail("invalid reference format")
    name, tag, digest = m.group(1), m.group(2), m.group(3)
    if len(name) > 255:
        raise fail("invalid reference format: repository name must not be more than 255 characters")
    if not tag and not digest:
        tag = "latest"
    with_tag = image if digest or image.endswith(f":{tag}") else f"{image}:{tag}"
    return ImageRef(image, with_tag, domain, name.split("/", 1)[1], tag, digest)
