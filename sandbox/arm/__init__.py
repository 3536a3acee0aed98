"""The sandbox's Azure Resource Manager and Microsoft Graph (``Arm``), split by job: see ``server``."""

from sandbox.arm.bodies import cluster_egress_ips
from sandbox.arm.envelope import ArmError, Caller
from sandbox.arm.server import Arm

__all__ = ["Arm", "ArmError", "Caller", "cluster_egress_ips"]
