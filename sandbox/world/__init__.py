"""Sandbox worlds: the YAML format of docs/spec/world.md, read into plain data the sandbox runs.

The package splits by job: :mod:`~sandbox.world.model` (the dataclasses), :mod:`~sandbox.world.yaml_reader`
(safe, bounded YAML), :mod:`~sandbox.world.sections` (per-section readers), :mod:`~sandbox.world.timeline`
(steps and changes) and :mod:`~sandbox.world.loader` (``load``/``parse``). Importers use the names here.
"""

from sandbox.world.loader import load, parse
from sandbox.world.model import (
    CLOUDS,
    DEFAULT_SUBSCRIPTION,
    DEFAULT_TENANT,
    DOCKERHUB_ALIASES,
    EVENT_SCHEMAS,
    FAULTS,
    MAX_POOL_NODES,
    MAX_REPLICAS,
    PRINCIPAL_NAMESPACE,
    ROLE_MODES,
    SECRET_TYPES_WITH_AUTHS,
    WORKLOAD_KINDS,
    Cluster,
    Fault,
    Latency,
    Namespace,
    NodePool,
    Platform,
    Registry,
    RoleAssignment,
    SandboxCloud,
    Secret,
    Step,
    Workload,
    World,
    WorldError,
)
from sandbox.world.sections import check_principal, check_scope
from sandbox.world.timeline import (
    CHANGES,
    apply_cluster_change,
    apply_registry_change,
    apply_resource_group_delete,
)
from sandbox.world.yaml_reader import MAX_ALIASES, MAX_DEPTH, MAX_FILE_BYTES, MAX_NODES, MAX_SCALAR

__all__ = [
    "CHANGES",
    "CLOUDS",
    "DEFAULT_SUBSCRIPTION",
    "DEFAULT_TENANT",
    "DOCKERHUB_ALIASES",
    "EVENT_SCHEMAS",
    "FAULTS",
    "MAX_ALIASES",
    "MAX_DEPTH",
    "MAX_FILE_BYTES",
    "MAX_NODES",
    "MAX_POOL_NODES",
    "MAX_REPLICAS",
    "MAX_SCALAR",
    "PRINCIPAL_NAMESPACE",
    "ROLE_MODES",
    "SECRET_TYPES_WITH_AUTHS",
    "WORKLOAD_KINDS",
    "Cluster",
    "Fault",
    "Latency",
    "Namespace",
    "NodePool",
    "Platform",
    "Registry",
    "RoleAssignment",
    "SandboxCloud",
    "Secret",
    "Step",
    "Workload",
    "World",
    "WorldError",
    "apply_cluster_change",
    "apply_registry_change",
    "apply_resource_group_delete",
    "check_principal",
    "check_scope",
    "load",
    "parse",
]
