"""Tiny, real OCI images for the sandbox registries.

Each (repository, tag, platform) gets one gzip tar layer holding a single small file, an image
config with that platform's os/architecture, and an OCI image manifest. A tag that lists several
platforms gets an OCI image index whose entries carry ``platform``. Everything is deterministic:
the same (repository, tag, platform) always gives the same bytes, so the same content dedupes and
digests are stable across runs.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from dataclasses import dataclass
from typing import Any

from sandbox.world import Platform

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
#: What a client asks for in ``Accept`` to get any of the four manifest kinds.
MANIFEST_ACCEPT = ", ".join((OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST))

_CREATED = "2026-01-01T00:00:00Z"
_MTIME = 1767225600  # 2026-01-01T00:00:00Z


@dataclass(frozen=True)
class Blob:
    media_type: str
    data: bytes

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.data).hexdigest()

    @property
    def size(self) -> int:
        return len(self.data)

    def descriptor(self, **extra: Any) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size, **extra}


@dataclass(frozen=True)
class PlatformImage:
    platform: Platform
    config: Blob
    layer: Blob
    manifest: Blob


@dataclass(frozen=True)
class Image:
    """What to push for one tag: blobs, per-platform manifests, and the manifest the tag names."""

    repository: str
    tag: str
    platforms: tuple[PlatformImage, ...]
    top: Blob  # the image manifest (one platform) or the OCI index (several)

    @property
    def digest(self) -> str:
        return self.top.digest

    @property
    def is_index(self) -> bool:
        return self.top.media_type == OCI_INDEX


def _canonical(value: dict[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode()


def _layer_tar(repository: str, tag: str, platform: Platform) -> bytes:
    content = f"pullwatch sandbox image {repository}:{tag} for {platform}\n".encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo("etc/pullwatch-image")
        info.size = len(content)
        info.mtime = _MTIME
        info.mode = 0o644
        info.uname = info.gname = "root"
        tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def platform_image(repository: str, tag: str, platform: Platform) -> PlatformImage:
    tar = _layer_tar(repository, tag, platform)
    layer = Blob(OCI_LAYER, gzip.compress(tar, compresslevel=9, mtime=0))
    config: dict[str, Any] = {
        "architecture": platform.arch,
        "os": platform.os,
        "created": _CREATED,
        "config": {"Cmd": ["/bin/true"], "Labels": {"org.opencontainers.image.ref.name": tag}},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(tar).hexdigest()]},
        "history": [{"created": _CREATED, "created_by": f"pullwatch sandbox {repository}:{tag}"}],
    }
    if platform.variant:
        config["variant"] = platform.variant
    config_blob = Blob(OCI_CONFIG, _canonical(config))
    manifest = Blob(
        OCI_MANIFEST,
        _canonical(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": config_blob.descriptor(),
                "layers": [layer.descriptor()],
            }
        ),
    )
    return PlatformImage(platform, config_blob, layer, manifest)


def build_image(repository: str, tag: str, platforms: list[Platform]) -> Image:
    """The image for ``repository:tag``: a manifest for one platform, an OCI index for several."""
    if not platforms:
        platforms = [Platform("linux", "amd64")]
    images = tuple(platform_image(repository, tag, p) for p in dict.fromkeys(platforms))
    if len(images) == 1:
        return Image(repository, tag, images, images[0].manifest)
    entries = []
    for image in images:
        platform: dict[str, str] = {"architecture": image.platform.arch, "os": image.platform.os}
        if image.platform.variant:
            platform["variant"] = image.platform.variant
        entries.append(image.manifest.descriptor(platform=platform))
    index = Blob(OCI_INDEX, _canonical({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}))
    return Image(repository, tag, images, index)
