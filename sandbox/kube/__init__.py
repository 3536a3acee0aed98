"""A Kubernetes API server per sandbox cluster (``KubeCluster``), split by job: see ``cluster``."""

from sandbox.kube.cluster import KubeCluster
from sandbox.kube.resources import AKS_SERVER_ID, iso
from sandbox.kube.selectors import parse_label_selector

__all__ = ["AKS_SERVER_ID", "KubeCluster", "iso", "parse_label_selector"]
