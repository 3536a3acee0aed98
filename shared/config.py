"""Configuration from app settings (environment variables) only.

:data:`SETTINGS` is the single list of every setting the code reads: its name, default and meaning.
``local.settings.json.example``, the infra tests and the README are checked against it.
"""

from __future__ import annotations

import ipaddress
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from shared.cloud import AZURE_PUBLIC, Cloud, cloud_from_env
from shared.errors import InputError


class ConfigError(ValueError):
    """A setting has a value that cannot be used; the message names the setting."""


@dataclass(frozen=True)
class Setting:
    name: str
    default: str
    meaning: str
    secret: bool = False


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "PULLWATCH_SUBSCRIPTIONS",
        "",
        "Comma-separated subscription IDs to watch (empty: every one the identity can read).",
    ),
    Setting(
        "PULLWATCH_CLUSTERS",
        "",
        "Comma-separated managedCluster resource IDs to watch (empty: every cluster in the subscriptions).",
    ),
    Setting("PULLWATCH_REGISTRIES", "", "Comma-separated extra registry hosts to check for every cluster."),
    Setting("PULLWATCH_AUDIT_SCHEDULE", "0 0 2 * * *", "NCRONTAB schedule (UTC) of the nightly audit."),
    Setting(
        "PULLWATCH_READ_SECRETS",
        "false",
        "true: read pull-secret content and try its credentials (needs secret read on clusters).",
    ),
    Setting("PULLWATCH_PROBE", "false", "true: run in-cluster pull probe pods per node pool and registry."),
    Setting("PULLWATCH_PROBE_NAMESPACE", "pullwatch-probe", "Namespace of the in-cluster probe pods."),
    Setting(
        "PULLWATCH_PROBE_IMAGES",
        "{}",
        "JSON object: registry host -> image the probe pulls (default: the smallest image a workload uses).",
    ),
    Setting(
        "PULLWATCH_SLACK_WEBHOOK_URL",
        "",
        "Default Slack incoming-webhook URL (secret: a Key Vault reference in Azure).",
        secret=True,
    ),
    Setting(
        "PULLWATCH_TEAMS_WEBHOOK_URL",
        "",
        "Default Teams Workflows webhook URL (secret: a Key Vault reference in Azure).",
        secret=True,
    ),
    Setting(
        "PULLWATCH_ROUTES",
        "[]",
        "JSON list of routes: {match: {cluster, subscription, tag}, min_severity, slack, teams}; webhook values name settings holding the URLs.",
    ),
    Setting(
        "PULLWATCH_MIN_SEVERITY",
        "warning",
        "Least severity that is notified on the default channels (error, warning, unknown, info).",
    ),
    Setting(
        "PULLWATCH_REMINDER_HOURS",
        "24",
        "Still-open findings are repeated in the nightly digest at most this often.",
    ),
    Setting(
        "PULLWATCH_DEBOUNCE_SECONDS",
        "60",
        "Events for one cluster within this window are coalesced into one audit.",
    ),
    Setting(
        "PULLWATCH_POD_GRACE_SECONDS",
        "300",
        "Pods younger than this are not yet reported as failing to pull.",
    ),
    Setting(
        "PULLWATCH_SLOW_MS", "3000", "REGISTRY_SLOW threshold for token + manifest latency, in milliseconds."
    ),
    Setting("PULLWATCH_HTTP_TIMEOUT_SECONDS", "10", "Timeout of every network call, in seconds."),
    Setting(
        "PULLWATCH_REGISTRY_DEADLINE_SECONDS",
        "",
        "Most one registry request may take in all (connect, TLS, every read, retries and their waits), in seconds; empty: 3 x PULLWATCH_HTTP_TIMEOUT_SECONDS, never less than it.",
    ),
    Setting("PULLWATCH_RETRY_BASE_SECONDS", "1.0", "First backoff delay of bounded retries (429 / 5xx)."),
    Setting("PULLWATCH_RETRIES", "3", "Retries after the first attempt for 429 / 5xx answers."),
    Setting("PULLWATCH_REGISTRY_CONCURRENCY", "8", "Concurrent requests per registry."),
    Setting(
        "PULLWATCH_CLOUD",
        "",
        "AzureCloud, AzureUSGovernment or AzureChinaCloud: every endpoint and suffix follows it "
        "(empty: the Azure SDK's AZURE_SDK_CLOUD_CONF, else AzureCloud).",
    ),
    Setting(
        "PULLWATCH_ARM_ENDPOINT",
        "",
        "Azure Resource Manager endpoint (empty: the cloud's, e.g. https://management.azure.com).",
    ),
    Setting(
        "PULLWATCH_GRAPH_ENDPOINT",
        "",
        "Microsoft Graph endpoint for service-principal clusters (empty: the cloud's, e.g. https://graph.microsoft.com).",
    ),
    Setting(
        "PULLWATCH_CA_BUNDLE",
        "",
        "Path of extra CA certificates to trust (sandbox, TLS-intercepting proxies).",
    ),
    Setting(
        "PULLWATCH_HOSTS",
        "{}",
        "JSON object: host name -> 'ip:port' (or null: does not resolve). Test/sandbox name map honoured by pullwatch's HTTP layer.",
    ),
    Setting(
        "PULLWATCH_ALLOW_ADDRESSES",
        "",
        "Comma-separated CIDRs registries may resolve to besides public addresses (e.g. 10.0.0.0/8 for private endpoints).",
    ),
    Setting(
        "PULLWATCH_TRUSTED_TENANTS",
        "",
        "Comma-separated tenant IDs whose registries may receive an Entra token (default: the app's tenant).",
    ),
    Setting("AZURE_TENANT_ID", "", "Tenant of pullwatch's identity."),
    Setting("AZURE_CLIENT_ID", "", "Client ID of the user-assigned managed identity pullwatch runs as."),
    Setting(
        "AzureWebJobsStorage",
        "",
        "Storage for queues, tables and the outbox (identity-based in Azure: AzureWebJobsStorage__accountName).",
    ),
    Setting(
        "AzureWebJobsStorage__accountName", "", "Storage account name for identity-based connections (Azure)."
    ),
    Setting("PULLWATCH_AUDIT_QUEUE", "pullwatch-audit", "Queue of per-cluster audit messages."),
    Setting(
        "PULLWATCH_STATE_TABLE",
        "pullwatchstate",
        "Table holding open findings, sent messages, seen events and the outbox.",
    ),
    Setting(
        "APPLICATIONINSIGHTS_CONNECTION_STRING",
        "",
        "Application Insights connection string (OpenTelemetry export when set).",
    ),
)

_BY_NAME = {s.name: s for s in SETTINGS}

#: One registry request (all its reads, retries and waits) ends within this many HTTP timeouts.
REQUEST_DEADLINE_TIMEOUTS = 3.0


def _raw(env: Mapping[str, str], name: str) -> str:
    if name not in _BY_NAME:
        raise KeyError(f"setting {name} is not in the settings catalogue")
    return env.get(name, _BY_NAME[name].default).strip()


def _list(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in _raw(env, name).split(",") if p.strip())


def _bool(env: Mapping[str, str], name: str) -> bool:
    value = _raw(env, name).lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("", "0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}: expected true or false, got {value!r}")


def _number(env: Mapping[str, str], name: str, kind: type[int] | type[float]) -> Any:
    value = _raw(env, name)
    try:
        number = kind(value)
    except ValueError:
        raise ConfigError(f"{name}: expected a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ConfigError(f"{name}: expected a finite number, got {value!r}")
    if number < 0:
        raise ConfigError(f"{name}: must not be negative, got {value!r}")
    return number


def _timeout(env: Mapping[str, str]) -> float:
    number = float(_number(env, "PULLWATCH_HTTP_TIMEOUT_SECONDS", float))
    if number <= 0:
        raise ConfigError(
            "PULLWATCH_HTTP_TIMEOUT_SECONDS: must be more than 0 (every network call has a timeout)"
        )
    return number


def _registry_deadline(env: Mapping[str, str], timeout: float) -> float | None:
    if not _raw(env, "PULLWATCH_REGISTRY_DEADLINE_SECONDS"):
        return None
    number = float(_number(env, "PULLWATCH_REGISTRY_DEADLINE_SECONDS", float))
    if number < timeout:
        raise ConfigError(
            f"PULLWATCH_REGISTRY_DEADLINE_SECONDS: {number:g} is less than PULLWATCH_HTTP_TIMEOUT_SECONDS "
            f"({timeout:g}); one request's deadline covers at least one read"
        )
    return number


def _json(env: Mapping[str, str], name: str, kind: type) -> Any:
    value = _raw(env, name)
    try:
        data = json.loads(value)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{name}: not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(data, kind):
        raise ConfigError(f"{name}: expected a JSON {kind.__name__}")
    return data


def _hosts(env: Mapping[str, str]) -> dict[str, tuple[str, int] | None]:
    out: dict[str, tuple[str, int] | None] = {}
    for host, target in _json(env, "PULLWATCH_HOSTS", dict).items():
        if target is None:
            out[host.lower()] = None
            continue
        if not isinstance(target, str) or ":" not in target:
            raise ConfigError(f"PULLWATCH_HOSTS: {host!r} must map to 'ip:port' or null")
        ip, _, port = target.rpartition(":")
        try:
            ipaddress.ip_address(ip.strip("[]"))
            number = int(port)
            if not 0 < number < 65536:
                raise ValueError(port)
            out[host.lower()] = (ip.strip("[]"), number)
        except ValueError:
            raise ConfigError(f"PULLWATCH_HOSTS: {host!r} -> {target!r} is not 'ip:port'") from None
    return out


def _networks(env: Mapping[str, str]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    nets = []
    for part in _list(env, "PULLWATCH_ALLOW_ADDRESSES"):
        try:
            nets.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise ConfigError(f"PULLWATCH_ALLOW_ADDRESSES: {part!r} is not a CIDR") from None
    return tuple(nets)


@dataclass(frozen=True)
class Settings:
    subscriptions: tuple[str, ...] = ()
    clusters: tuple[str, ...] = ()
    registries: tuple[str, ...] = ()
    audit_schedule: str = "0 0 2 * * *"
    read_secrets: bool = False
    probe: bool = False
    probe_namespace: str = "pullwatch-probe"
    probe_images: Mapping[str, str] = field(default_factory=dict)
    slack_webhook_url: str = ""
    teams_webhook_url: str = ""
    routes: tuple[Mapping[str, Any], ...] = ()
    min_severity: str = "warning"
    reminder_hours: float = 24.0
    debounce_seconds: float = 60.0
    pod_grace_seconds: float = 300.0
    slow_ms: float = 3000.0
    http_timeout: float = 10.0
    # PULLWATCH_REGISTRY_DEADLINE_SECONDS; None: REQUEST_DEADLINE_TIMEOUTS x http_timeout (30 s by default).
    registry_deadline: float | None = None
    retry_base_seconds: float = 1.0
    retries: int = 3
    registry_concurrency: int = 8
    cloud: Cloud = AZURE_PUBLIC
    arm_endpoint: str = AZURE_PUBLIC.arm_endpoint
    graph_endpoint: str = AZURE_PUBLIC.graph_endpoint
    ca_bundle: str | None = None
    hosts: Mapping[str, tuple[str, int] | None] = field(default_factory=dict)
    allow_addresses: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    trusted_tenants: tuple[str, ...] = ()
    tenant_id: str | None = None
    client_id: str | None = None
    storage_connection: str | None = None
    storage_account: str | None = None
    audit_queue: str = "pullwatch-audit"
    state_table: str = "pullwatchstate"
    appinsights_connection: str | None = None
    env: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        from shared.findings import Severity

        try:
            Severity.parse(_raw(env, "PULLWATCH_MIN_SEVERITY"))
        except ValueError as exc:
            raise ConfigError(f"PULLWATCH_MIN_SEVERITY: {exc}") from None
        try:
            cloud = cloud_from_env(env)
        except InputError as exc:
            raise ConfigError(f"PULLWATCH_CLOUD: {exc}") from None
        ca = _raw(env, "PULLWATCH_CA_BUNDLE") or None
        timeout = _timeout(env)
        if ca and not os.path.isfile(ca):
            raise ConfigError(f"PULLWATCH_CA_BUNDLE: no file at {ca}")
        return cls(
            subscriptions=_list(env, "PULLWATCH_SUBSCRIPTIONS"),
            clusters=_list(env, "PULLWATCH_CLUSTERS"),
            registries=tuple(r.lower() for r in _list(env, "PULLWATCH_REGISTRIES")),
            audit_schedule=_raw(env, "PULLWATCH_AUDIT_SCHEDULE"),
            read_secrets=_bool(env, "PULLWATCH_READ_SECRETS"),
            probe=_bool(env, "PULLWATCH_PROBE"),
            probe_namespace=_raw(env, "PULLWATCH_PROBE_NAMESPACE"),
            probe_images=_json(env, "PULLWATCH_PROBE_IMAGES", dict),
            slack_webhook_url=_raw(env, "PULLWATCH_SLACK_WEBHOOK_URL"),
            teams_webhook_url=_raw(env, "PULLWATCH_TEAMS_WEBHOOK_URL"),
            routes=tuple(_json(env, "PULLWATCH_ROUTES", list)),
            min_severity=_raw(env, "PULLWATCH_MIN_SEVERITY").lower(),
            reminder_hours=_number(env, "PULLWATCH_REMINDER_HOURS", float),
            debounce_seconds=_number(env, "PULLWATCH_DEBOUNCE_SECONDS", float),
            pod_grace_seconds=_number(env, "PULLWATCH_POD_GRACE_SECONDS", float),
            slow_ms=_number(env, "PULLWATCH_SLOW_MS", float),
            http_timeout=timeout,
            registry_deadline=_registry_deadline(env, timeout),
            retry_base_seconds=_number(env, "PULLWATCH_RETRY_BASE_SECONDS", float),
            retries=_number(env, "PULLWATCH_RETRIES", int),
            registry_concurrency=max(1, _number(env, "PULLWATCH_REGISTRY_CONCURRENCY", int)),
            cloud=cloud,
            arm_endpoint=_raw(env, "PULLWATCH_ARM_ENDPOINT").rstrip("/") or cloud.arm_endpoint,
            graph_endpoint=_raw(env, "PULLWATCH_GRAPH_ENDPOINT").rstrip("/") or cloud.graph_endpoint,
            ca_bundle=ca,
            hosts=_hosts(env),
            allow_addresses=_networks(env),
            trusted_tenants=_list(env, "PULLWATCH_TRUSTED_TENANTS"),
            tenant_id=_raw(env, "AZURE_TENANT_ID") or None,
            client_id=_raw(env, "AZURE_CLIENT_ID") or None,
            storage_connection=_raw(env, "AzureWebJobsStorage") or None,
            storage_account=_raw(env, "AzureWebJobsStorage__accountName") or None,
            audit_queue=_raw(env, "PULLWATCH_AUDIT_QUEUE"),
            state_table=_raw(env, "PULLWATCH_STATE_TABLE"),
            appinsights_connection=_raw(env, "APPLICATIONINSIGHTS_CONNECTION_STRING") or None,
            env=env,
        )

    @property
    def request_deadline(self) -> float:
        """Seconds one registry request may take in all; never less than one read's timeout."""
        deadline = self.registry_deadline or REQUEST_DEADLINE_TIMEOUTS * self.http_timeout
        return max(deadline, self.http_timeout)

    def secret_values(self) -> tuple[str, ...]:
        """Values that must never appear in output: every secret setting and every route webhook."""
        values = [self.env.get(s.name, "") for s in SETTINGS if s.secret]
        for route in self.routes:
            for kind in ("slack", "teams"):
                names = route.get(kind) or []
                for name in [names] if isinstance(names, str) else names:
                    values.append(self.env.get(str(name), ""))
        return tuple(v for v in values if v)
