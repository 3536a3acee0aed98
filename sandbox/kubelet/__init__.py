"""The simulated kubelet + containerd of every sandbox cluster (``Kubelet``), split by job: see ``agent``."""

from sandbox.kubelet.agent import Kubelet
from sandbox.kubelet.containerd import _match_platform
from sandbox.kubelet.keyring import docker_config_auths, keyring_lookup
from sandbox.kubelet.reference import ReferenceError_, parse_image

__all__ = [
    "Kubelet",
    "ReferenceError_",
    "_match_platform",
    "docker_config_auths",
    "keyring_lookup",
    "parse_image",
]
