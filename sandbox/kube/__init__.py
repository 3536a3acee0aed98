"""A Kubernetes API server per sandbox cluster (``KubeCluster``), split by job: see ``cluster``."""

from sandbox.kube.cluster import KubeCluster, NodeInfo, PodCallback, iter_pods
from sandbox.kube.resources import AKS_CLIENT_ID, AKS_SERVER_ID, RESOURCES, Resource, iso
from sandbox.kube.selectors import SelectorError, parse_field_selector, parse_label_selector
from sandbox.kube.store import ObjectStore

__all__ = [
    "AKS_CLIENT_ID",
    "AKS_SERVER_ID",
    "RESOURCES",
    "KubeCluster",
    "NodeInfo",
    "ObjectStore",
    "PodCallback",
    "Resource",
    "SelectorError",
    "iso",
    "iter_pods",
    "parse_field_selector",
    "parse_label_selector",
]
