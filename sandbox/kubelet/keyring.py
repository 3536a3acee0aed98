"""kubelet's credential keyring: pull secrets' ``.dockerconfigjson`` / ``.dockercfg`` entries matched to an
image the way kubelet's ``credentialprovider`` matches them.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sandbox.kubelet.reference import ImageRef

# --- kubelet's credential keyring --------------------------------------------------------------


@dataclass(frozen=True)
class Credential:
    username: str
    password: str
    source: str  # "secret:<name>" | "provider"

    def fingerprint(self) -> str:
        return hashlib.sha256(f"{self.username}\0{self.password}".encode()).hexdigest()[:16]


def _keyring_key(key: str) -> str:
    value = key if key.startswith(("http://", "https://")) else "https://" + key
    parts = urlsplit(value)
    path = parts.path
    if path.startswith(("/v2/", "/v1/")):
        path = path[3:]
    host = parts.netloc
    return host + path if path and path != "/" else host


def _url_match(key: str, image_name: str) -> bool:
    """kubelet credentialprovider URLsMatchStr: glob host parts, equal ports, key path a prefix."""
    k_host, _, k_path = key.partition("/")
    i_host, _, i_path = image_name.partition("/")
    k_h, _, k_port = k_host.partition(":")
    i_h, _, i_port = i_host.partition(":")
    if k_port != i_port:
        return False
    k_parts, i_parts = k_h.lower().split("."), i_h.lower().split(".")
    if len(k_parts) != len(i_parts):
        return False
    for kp, ip in zip(k_parts, i_parts, strict=True):
        pattern = "^" + re.escape(kp).replace(r"\*", "[^.]*") + "$"
        if not re.match(pattern, ip):
            return False
    return i_path.startswith(k_path)


def docker_config_auths(secret: dict[str, Any]) -> dict[str, dict[str, str]] | None:
    """The auths of a pull secret (dockerconfigjson or dockercfg); None when it holds none."""
    data = secret.get("data") or {}
    try:
        if secret.get("type") == "kubernetes.io/dockerconfigjson" and ".dockerconfigjson" in data:
            doc = json.loads(base64.b64decode(data[".dockerconfigjson"]))
            auths = doc.get("auths") if isinstance(doc, dict) else None
        elif secret.get("type") == "kubernetes.io/dockercfg" and ".dockercfg" in data:
            auths = json.loads(base64.b64decode(data[".dockercfg"]))
        else:
            return None
    except (ValueError, TypeError):
        return None
    if not isinstance(auths, dict):
        return None
    out: dict[str, dict[str, str]] = {}
    for key, entry in auths.items():
        if not isinstance(entry, dict):
            continue
        user, password = str(entry.get("username", "")), str(entry.get("password", ""))
        if (not user or not password) and entry.get("auth"):
            try:
                user, _, password = base64.b64decode(str(entry["auth"])).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                continue
        out[str(key)] = {"username": user, "password": password}
    return out


def keyring_lookup(
    auths: list[tuple[str, dict[str, str]]], ref: ImageRef
) -> list[tuple[str, dict[str, str]]]:
    """kubelet BasicDockerKeyring.Lookup over (source, entry) pairs in order."""
    image_name = ref.name
    matched, default = [], []
    for source, entry in auths:
        key = _keyring_key(entry["key"])
        if key in ("index.docker.io", "docker.io") and ref.domain == "docker.io":
            if key == "docker.io":
                matched.append((source, entry))
            else:
                default.append((source, entry))
        elif _url_match(key, image_name):
            matched.append((source, entry))
    return matched or default
