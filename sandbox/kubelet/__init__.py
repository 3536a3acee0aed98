"""The simulated kubelet + containerd of every sandbox cluster (``Kubelet``), split by job: see ``agent``."""

from sandbox.kubelet.agent import Kubelet
from sandbox.kubelet.containerd import PullResult, _match_platform
from sandbox.kubelet.keyring import Credential, docker_config_auths, keyring_lookup
from sandbox.kubelet.node_http import VIEWPOINT_HEADER, public_ip
from sandbox.kubelet.reference import ImageRef, ReferenceError_, parse_image

__all__ = [
    "VIEWPOINT_HEADER",
    "Credential",
    "ImageRef",
    "Kubelet",
    "PullResult",
    "ReferenceError_",
    "_match_platform",
    "docker_config_auths",
    "keyring_lookup",
    "parse_image",
    "public_ip",
]
