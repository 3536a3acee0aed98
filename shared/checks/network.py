"""Network and access findings read from ARM alone (pure): can the cluster's network reach each
ACR it uses, by the registry's own rules? Failures seen on the wire come from the registry probe
and the kubelet's events; this check explains them from configuration, before a pull fails."""

from __future__ import annotations

import ipaddress
import shlex
from collections.abc import Mapping, Sequence

from shared.findings import Finding
from shared.model import ClusterInfo, RegistryInfo


def _allowed(ip: str, rules: Sequence[str]) -> bool:
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    for rule in rules:
        try:
            if address in ipaddress.ip_network(rule, strict=False):
                return True
        except ValueError:
            continue
    return False


def network_findings(
    cluster: ClusterInfo,
    registries: Sequence[RegistryInfo],
    egress_ips: Sequence[str] | None,
    endpoint_vnets: Mapping[str, Sequence[str] | None],
) -> list[Finding]:
    """``egress_ips``: the cluster's outbound public IPs (None: unknown). ``endpoint_vnets``: per
    registry login server, the vnets its private endpoints sit in (None: unknown)."""
    out: list[Finding] = []
    cluster_vnets = {v.lower() for v in cluster.vnet_ids}
    for reg in registries:
        vnets = endpoint_vnets.get(reg.login_server)
        private = bool(vnets and cluster_vnets & {v.lower() for v in vnets})
        acr = shlex.quote(reg.name)
        base = {
            "registry_id": reg.id,
            "cluster_vnets": sorted(cluster.vnet_ids),
            "private_endpoint_vnets": sorted(vnets) if vnets is not None else None,
        }
        if reg.public_network_access.lower() == "disabled" and not private:
            if vnets is None and reg.private_endpoint_ids:
                out.append(_incomplete(cluster, reg, "the registry's private endpoints could not be read"))
            else:
                out.append(
                    Finding(
                        code="REGISTRY_PUBLIC_ACCESS_DISABLED",
                        cluster=cluster.id,
                        registry=reg.login_server,
                        message=(
                            f"{reg.name} has public network access disabled and no private endpoint in the "
                            f"virtual network of {cluster.name}: its nodes cannot reach it."
                        ),
                        evidence={**base, "public_network_access": reg.public_network_access},
                        remediation=(
                            f"az network private-endpoint create --name pe-{reg.name} --resource-group "
                            f"{shlex.quote(cluster.resource_group)} --vnet-name <cluster vnet> --subnet <subnet> "
                            f"--private-connection-resource-id {shlex.quote(reg.id)} --group-id registry "
                            "--connection-name acr  # plus a privatelink."
                            f"{reg.login_server.split('.', 1)[-1]} DNS zone linked to the vnet"
                        ),
                    )
                )
        elif reg.network_default_action.lower() == "deny" and not private:
            if egress_ips is None:
                out.append(_incomplete(cluster, reg, "the cluster's egress IPs could not be read"))
            elif not any(_allowed(ip, reg.ip_rules) for ip in egress_ips):
                first = egress_ips[0] if egress_ips else "<egress ip>"
                out.append(
                    Finding(
                        code="REGISTRY_FIREWALL_DENIED",
                        cluster=cluster.id,
                        registry=reg.login_server,
                        message=(
                            f"The firewall of {reg.name} denies by default and allows none of the egress IPs of "
                            f"{cluster.name} ({', '.join(egress_ips) or 'none known'})."
                        ),
                        evidence={
                            **base,
                            "egress_ips": list(egress_ips),
                            "ip_rules": list(reg.ip_rules),
                            "default_action": reg.network_default_action,
                        },
                        remediation=f"az acr network-rule add --name {acr} --ip-address {shlex.quote(first)}",
                    )
                )
        if not reg.authentication_as_arm:
            out.append(
                Finding(
                    code="REGISTRY_AUTH_REJECTED",
                    cluster=cluster.id,
                    registry=reg.login_server,
                    message=(
                        f"{reg.name} accepts only ACR-audience Entra tokens (authentication-as-ARM is disabled); "
                        f"the kubelet of {cluster.name} exchanges ARM-audience tokens, so the registry rejects them "
                        "whatever roles it holds."
                    ),
                    evidence={"policy": "azureADAuthenticationAsArmPolicy", "status": "disabled"},
                    remediation=f"az acr config authentication-as-arm update --registry {acr} --status enabled",
                )
            )
    return out


def _incomplete(cluster: ClusterInfo, reg: RegistryInfo, reason: str) -> Finding:
    return Finding(
        code="CHECK_INCOMPLETE",
        cluster=cluster.id,
        registry=reg.login_server,
        message=f"Could not check whether {cluster.name} can reach {reg.name}: {reason}.",
        evidence={"check": "network", "reason": reason},
    )
