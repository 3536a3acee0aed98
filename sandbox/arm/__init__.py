"""The sandbox's Azure Resource Manager and Microsoft Graph (``Arm``), split by job: see ``server``."""

from sandbox.arm.bodies import cluster_egress_ips
from sandbox.arm.server import Arm

__all__ = ["Arm", "cluster_egress_ips"]
