"""Offline validation of infra/ (no Bicep compiler here): every Bicep file is parsed with pycep and
checked against what the code needs — roles (only the allowed ones, each at its intended scope),
no storage keys, every app setting of ``shared.config.SETTINGS``, Event Grid filters equal to
``shared.plan.HANDLED_EVENT_TYPES`` / ``HANDLED_OPERATIONS``, Kubernetes RBAC covering what the
Kubernetes client lists — and scanned with checkov. Each check is a function over the file texts,
so the mutation tests can show it catching drift on a modified copy.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from pycep import BicepParser

from shared.clients.kube import LIST_PATHS
from shared.config import SETTINGS
from shared.plan import HANDLED_EVENT_TYPES, HANDLED_OPERATIONS

ROOT = Path(__file__).resolve().parent.parent
INFRA = ROOT / "infra"
CHECKOV = ROOT / ".venv-tools" / "bin" / "checkov"

Files = Mapping[str, str]  # path relative to the repo root -> text

# Built-in role definition GUIDs (Azure built-in roles documentation).
READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"
AKS_CLUSTER_USER = "4abbcc35-e782-43d8-92c5-2d3f1bd2253f"
AKS_RBAC_READER = "7f6c6a51-bcf8-42ba-9220-52d62157d7db"
ACR_PULL = "7f951dda-4ed3-4680-a7ca-43fe172d538d"
ACR_REPOSITORY_READER = "b93aa761-3e63-49ed-ac28-beffa264f7ac"
QUEUE_DATA_CONTRIBUTOR = "974c5e8b-45b9-4653-ba55-5f855dd0fb88"
TABLE_DATA_CONTRIBUTOR = "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3"
BLOB_DATA_OWNER = "b7e6dc6d-f1e8-4753-8033-0f276bb0955b"
BLOB_DATA_CONTRIBUTOR = "ba92f5b4-2d11-453d-a403-e96b0029c9fe"
KEY_VAULT_SECRETS_USER = "4633458b-17de-408a-b874-0445c86b69e6"
MONITORING_METRICS_PUBLISHER = "3913510d-42f4-4e42-8a64-420c390055eb"
#: Named for clear failure messages; any role not in ALLOWED_ROLES fails anyway.
FORBIDDEN = {
    "8e3af657-a8ff-443c-a75c-2fe8c4bcb635": "Owner",
    "b24988ac-6180-42a0-ab88-20f7382dd24c": "Contributor",
    "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9": "User Access Administrator",
    "0ab0b1a8-8aac-4efd-b8c2-3ee1fb270be8": "Azure Kubernetes Service Cluster Admin Role",
    "b1ff04bb-8a4e-4dc4-8eb5-8693973ce19b": "Azure Kubernetes Service RBAC Cluster Admin",
    "3498e952-d568-435e-9b2c-8d77e338d7f7": "Azure Kubernetes Service RBAC Admin",
    "a7ffa36f-339b-4b5c-8bdf-e2c188b2c0eb": "Azure Kubernetes Service RBAC Writer",
    "8311e382-0749-4cb8-b61a-304f252e45ec": "AcrPush",
    "17d1049b-9a84-46fb-8f53-869881c3d3ab": "Storage Account Contributor",
    "81a9662b-bebf-436f-a333-f67b29880f12": "Storage Account Key Operator Service Role",
}

CLUSTER = "Microsoft.ContainerService/managedClusters"
REGISTRY = "Microsoft.ContainerRegistry/registries"
STORAGE = "Microsoft.Storage/storageAccounts"
UAMI_PRINCIPAL = "identity.properties.principalId"

#: (file, role) -> (scope, principal, condition must mention). Role: a built-in GUID or
#: "custom:<param>" for the custom roles of aks-custom-roles.bicep. Scope: the resource type of the
#: `scope:` symbol, or the file's targetScope. Every assignment found must be here, and every entry
#: must be found.
ALLOWED_ROLES: dict[tuple[str, str], tuple[str, str, str | None]] = {
    ("infra/modules/subscription-reader.bicep", READER): ("subscription", "principalId", None),
    ("infra/modules/cluster-access.bicep", AKS_CLUSTER_USER): (CLUSTER, "principalId", None),
    ("infra/modules/cluster-access.bicep", AKS_RBAC_READER): (CLUSTER, "principalId", "azureRbac"),
    ("infra/modules/cluster-access.bicep", "custom:nodeReaderRoleId"): (CLUSTER, "principalId", "azureRbac"),
    ("infra/modules/cluster-access.bicep", "custom:secretReaderRoleId"): (
        CLUSTER,
        "principalId",
        "readPullSecrets",
    ),
    ("infra/modules/registry-access.bicep", ACR_PULL): (REGISTRY, "principalId", "abac"),
    ("infra/modules/registry-access.bicep", ACR_REPOSITORY_READER): (REGISTRY, "principalId", "abac"),
    ("infra/modules/app.bicep", QUEUE_DATA_CONTRIBUTOR): (STORAGE, UAMI_PRINCIPAL, None),
    ("infra/modules/app.bicep", TABLE_DATA_CONTRIBUTOR): (STORAGE, UAMI_PRINCIPAL, None),
    ("infra/modules/app.bicep", BLOB_DATA_OWNER): (STORAGE, UAMI_PRINCIPAL, None),
    ("infra/modules/app.bicep", KEY_VAULT_SECRETS_USER): ("Microsoft.KeyVault/vaults", UAMI_PRINCIPAL, None),
    ("infra/modules/app.bicep", MONITORING_METRICS_PUBLISHER): (
        "Microsoft.Insights/components",
        UAMI_PRINCIPAL,
        None,
    ),
    ("infra/modules/deadletter-access.bicep", BLOB_DATA_CONTRIBUTOR): (
        "Microsoft.Storage/storageAccounts/blobServices/containers",
        "principalId",
        None,
    ),
}

#: Modules that grant roles to pullwatch's identity: main.bicep must pass it the UAMI's principal.
IDENTITY_MODULES = ("subscriptionReaders", "clusterAccess", "registryAccess")

#: Custom roles: exactly these data actions, no control-plane action.
CUSTOM_ROLE_DATA_ACTIONS = {
    "nodeReader": ["Microsoft.ContainerService/managedClusters/nodes/read"],
    "secretReader": ["Microsoft.ContainerService/managedClusters/secrets/read"],
}

#: Text that means a key or a key-based connection string.
KEY_PATTERNS = (
    "listKeys",
    "listkeys(",
    "AccountKey",
    "DefaultEndpointsProtocol",
    "SharedAccessKey",
    "SharedAccessSignature",
    "listAccountSas",
    "listServiceSas",
    "listConnectionStrings",
    "UseDevelopmentStorage",
)

#: Settings that need not be app settings in Azure, and why.
NOT_APP_SETTINGS = {
    "AzureWebJobsStorage": "identity-based: AzureWebJobsStorage__accountName/__credential/__clientId",
}

SOURCES = {
    "Microsoft.ContainerRegistry.Registries": "Microsoft.ContainerRegistry.",
    "Microsoft.ContainerService.ManagedClusters": "Microsoft.ContainerService.",
    "Microsoft.Resources.Subscriptions": "Microsoft.Resources.",
}

# ---------------------------------------------------------------- reading


def load_files() -> dict[str, str]:
    """Every infra file, the azd manifest and function_app.py, as texts keyed by repo path."""
    paths = [
        *INFRA.rglob("*.bicep"),
        *INFRA.rglob("*.bicepparam"),
        *INFRA.rglob("*.yaml"),
        ROOT / "azure.yaml",
        ROOT / "function_app.py",
    ]
    return {p.relative_to(ROOT).as_posix(): p.read_text() for p in paths}


_PARSER = BicepParser()


def bicep(files: Files, path: str) -> dict[str, Any]:
    try:
        doc: dict[str, Any] = _PARSER.parse(text=files[path])
    except KeyError:
        raise AssertionError(f"{path} is missing") from None
    return doc


def bicep_files(files: Files) -> list[str]:
    return sorted(p for p in files if p.endswith(".bicep"))


def body(decl: Mapping[str, Any]) -> tuple[dict[str, Any], Any]:
    """A resource's or module's properties with loops and conditions unwrapped, and its condition."""
    config: Any = decl["config"]
    condition = None
    while (
        isinstance(config, dict) and "config" in config and ("condition" in config or "loop_type" in config)
    ):
        condition = condition or config.get("condition")
        config = config["config"]
    return config, condition


def accessor(expr: Any) -> str:
    """``a.b.c`` of a pycep property-accessor tree (or the bare symbol); '' for anything else."""
    if isinstance(expr, str):
        return expr
    if isinstance(expr, dict) and (op := expr.get("operator")) and op.get("type") == "property_accessor":
        left, right = accessor(op["operands"]["operand_1"]), accessor(op["operands"]["operand_2"])
        return f"{left}.{right}" if left and right else ""
    return ""


def mentions(expr: Any, name: str) -> bool:
    return name in json.dumps(expr)


def target_scope(doc: Mapping[str, Any]) -> str:
    return str(((doc.get("globals") or {}).get("scope") or {}).get("value") or "resourceGroup")


@dataclass(frozen=True)
class RoleAssignment:
    file: str
    symbol: str
    role: str  # GUID, or custom:<param>
    scope: str
    principal: str
    condition: Any


GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def role_assignments(files: Files) -> Iterator[RoleAssignment]:
    for path in bicep_files(files):
        doc = bicep(files, path)
        resources = doc.get("resources") or {}
        params = doc.get("parameters") or {}
        for symbol, decl in resources.items():
            if decl["type"] != "Microsoft.Authorization/roleAssignments":
                continue
            config, condition = body(decl)
            definition = config["properties"]["roleDefinitionId"]
            function = definition.get("function", {}) if isinstance(definition, dict) else {}
            arguments = function.get("parameters", {})
            if (
                function.get("type") != "subscription_resource_id"
                or arguments.get("resource_type") != "Microsoft.Authorization/roleDefinitions"
            ):
                raise AssertionError(
                    f"{path}: {symbol}: roleDefinitionId must be subscriptionResourceId('Microsoft.Authorization/roleDefinitions', <GUID or parameter>)"
                )
            name = arguments["resource_name_1"]
            if isinstance(name, str) and GUID.match(name):
                role = name
            elif isinstance(name, str) and name in params:
                role = f"custom:{name}"
            else:
                raise AssertionError(
                    f"{path}: {symbol}: role {name!r} is neither a literal GUID nor a parameter"
                )
            scope_symbol = config.get("scope")
            if scope_symbol is None:
                scope = target_scope(doc)
            elif isinstance(scope_symbol, str) and scope_symbol in resources:
                scope = resources[scope_symbol]["type"]
            else:
                raise AssertionError(
                    f"{path}: {symbol}: scope must be a resource symbol, got {scope_symbol!r}"
                )
            yield RoleAssignment(
                path, symbol, role, scope, accessor(config["properties"]["principalId"]), condition
            )


def app_settings(files: Files) -> dict[str, Any]:
    doc = bicep(files, "infra/modules/app.bicep")
    sites = [d for d in doc["resources"].values() if d["type"] == "Microsoft.Web/sites"]
    assert len(sites) == 1, "app.bicep must declare exactly one Microsoft.Web/sites"
    config, _ = body(sites[0])
    entries = config["properties"]["siteConfig"]["appSettings"]
    out: dict[str, Any] = {}
    for entry in entries:
        if entry["name"] in out:
            raise AssertionError(f"app setting {entry['name']} is set twice")
        out[entry["name"]] = entry["value"]
    return out


# ---------------------------------------------------------------- checks (each returns problems)


def check_roles(files: Files) -> list[str]:
    problems = []
    found: set[tuple[str, str]] = set()
    for ra in role_assignments(files):
        key = (ra.file, ra.role)
        label = FORBIDDEN.get(ra.role, ra.role)
        if ra.role in FORBIDDEN:
            problems.append(f"{ra.file}: {ra.symbol} assigns {label}, which pullwatch must never hold")
        if key not in ALLOWED_ROLES:
            problems.append(f"{ra.file}: {ra.symbol} assigns role {label}, not in the allowed table")
            continue
        found.add(key)
        scope, principal, condition = ALLOWED_ROLES[key]
        if ra.scope != scope:
            problems.append(f"{ra.file}: {ra.symbol} ({label}) is scoped to {ra.scope}, expected {scope}")
        if ra.principal != principal:
            problems.append(
                f"{ra.file}: {ra.symbol} ({label}) is granted to {ra.principal!r}, expected {principal!r}"
            )
        if condition and not mentions(ra.condition, condition):
            problems.append(f"{ra.file}: {ra.symbol} ({label}) must be conditional on {condition}")
    for key in ALLOWED_ROLES.keys() - found:
        problems.append(f"{key[0]}: role {key[1]} is missing (the code needs it)")
    return problems


def check_identity_wiring(files: Files) -> list[str]:
    """Role modules get the UAMI's principal; custom-role GUIDs come from aks-custom-roles.bicep."""
    problems = []
    modules = bicep(files, "infra/main.bicep").get("modules") or {}
    for name in IDENTITY_MODULES:
        if name not in modules:
            problems.append(f"main.bicep: module {name} is missing")
            continue
        params = body(modules[name])[0].get("params") or {}
        if accessor(params.get("principalId")) != "app.outputs.identityPrincipalId":
            problems.append(f"main.bicep: module {name} must grant to app.outputs.identityPrincipalId")
    cluster = body(modules.get("clusterAccess") or {"config": {}})[0].get("params") or {}
    for param in ("nodeReaderRoleId", "secretReaderRoleId", "readPullSecrets"):
        if param not in cluster:
            problems.append(f"main.bicep: clusterAccess must pass {param}")
    for param in ("nodeReaderRoleId", "secretReaderRoleId"):
        if (
            param in cluster
            and not mentions(cluster[param], f"customRoles.outputs.{param}")
            and not mentions(cluster[param], "customRoles")
        ):
            problems.append(f"main.bicep: clusterAccess.{param} must come from customRoles outputs")
    roles = bicep(files, "infra/modules/aks-custom-roles.bicep")["resources"]
    for symbol, data_actions in CUSTOM_ROLE_DATA_ACTIONS.items():
        if symbol not in roles:
            problems.append(f"aks-custom-roles.bicep: role {symbol} is missing")
            continue
        config, condition = body(roles[symbol])
        permissions = config["properties"]["permissions"]
        if len(permissions) != 1 or permissions[0].get("actions") or permissions[0].get("notActions"):
            problems.append(f"aks-custom-roles.bicep: {symbol} must have no control-plane actions")
        elif permissions[0].get("dataActions") != data_actions:
            problems.append(f"aks-custom-roles.bicep: {symbol} data actions must be exactly {data_actions}")
        if symbol == "secretReader" and not mentions(condition, "readPullSecrets"):
            problems.append("aks-custom-roles.bicep: secretReader must exist only with readPullSecrets")
    return problems


def check_no_keys(files: Files) -> list[str]:
    problems = []
    for path, text in files.items():
        if path == "function_app.py":
            continue
        for pattern in KEY_PATTERNS:
            if pattern.lower() in text.lower():
                problems.append(f"{path}: contains {pattern!r} (keys or key-based connection strings)")
    for path in bicep_files(files):
        for line in files[path].splitlines():
            if "ConnectionString" in line and "appInsights.properties.ConnectionString" not in line:
                problems.append(
                    f"{path}: connection string outside the Entra-authenticated App Insights setting: {line.strip()}"
                )
    doc = bicep(files, "infra/modules/app.bicep")
    for decl in doc["resources"].values():
        config, _ = body(decl)
        props = config.get("properties") or {}
        if decl["type"] == "Microsoft.Storage/storageAccounts":
            for prop, want in (
                ("allowSharedKeyAccess", False),
                ("allowBlobPublicAccess", False),
                ("minimumTlsVersion", "TLS1_2"),
            ):
                if props.get(prop) != want:
                    problems.append(
                        f"app.bicep: storage account {prop} must be {want!r}, got {props.get(prop)!r}"
                    )
        if decl["type"] == "Microsoft.Insights/components" and props.get("DisableLocalAuth") is not True:
            problems.append("app.bicep: Application Insights must have DisableLocalAuth: true")
        if decl["type"] == "Microsoft.KeyVault/vaults":
            for prop in ("enableRbacAuthorization", "enablePurgeProtection"):
                if props.get(prop) is not True:
                    problems.append(f"app.bicep: Key Vault must have {prop}: true")
    return problems


def check_app_settings(files: Files) -> list[str]:
    problems = []
    settings = app_settings(files)
    for s in SETTINGS:
        if s.name in NOT_APP_SETTINGS:
            if s.name in settings:
                problems.append(f"app.bicep: {s.name} must not be set ({NOT_APP_SETTINGS[s.name]})")
            continue
        if s.name not in settings:
            problems.append(f"app.bicep: app setting {s.name} (read by shared/config.py) is not set")
    if settings.get("AzureWebJobsStorage__credential") != "managedidentity":
        problems.append("app.bicep: AzureWebJobsStorage__credential must be managedidentity")
    for name in ("AzureWebJobsStorage__clientId", "AZURE_CLIENT_ID"):
        if accessor(settings.get(name)) != "identity.properties.clientId":
            problems.append(f"app.bicep: {name} must be the user-assigned identity's client id")
    auth = json.dumps(settings.get("APPLICATIONINSIGHTS_AUTHENTICATION_STRING"))
    if "ClientId=${identity.properties.clientId};Authorization=AAD" not in auth:
        problems.append(
            "app.bicep: APPLICATIONINSIGHTS_AUTHENTICATION_STRING must be ClientId=<uami>;Authorization=AAD"
        )
    for name in ("PULLWATCH_SLACK_WEBHOOK_URL", "PULLWATCH_TEAMS_WEBHOOK_URL"):
        if "@Microsoft.KeyVault(SecretUri=" not in json.dumps(settings.get(name)):
            problems.append(f"app.bicep: {name} must be a Key Vault reference")
    for name in ("FUNCTIONS_WORKER_RUNTIME", "FUNCTIONS_EXTENSION_VERSION"):
        if name in settings:
            problems.append(
                f"app.bicep: {name} is not allowed on Flex Consumption (runtime is in functionAppConfig)"
            )

    # main.bicep computes the PULLWATCH_* values; app.bicep reads them from pullwatchSettings.
    main = bicep(files, "infra/main.bicep")
    computed = main["variables"]["pullwatchSettings"]["value"]
    params = main.get("parameters") or {}
    for value in settings.values():
        ref = accessor(value)
        if ref.startswith("pullwatchSettings.") and ref.split(".", 1)[1] not in computed:
            problems.append(
                f"main.bicep: pullwatchSettings has no {ref.split('.', 1)[1]} (app.bicep reads it)"
            )
    defaults = {s.name: s.default for s in SETTINGS}
    for name, value in computed.items():
        if name not in defaults:
            problems.append(f"main.bicep: pullwatchSettings.{name} is not a setting in shared/config.py")
            continue
        if f"pullwatchSettings.{name}" not in {accessor(v) for v in settings.values()}:
            problems.append(f"app.bicep: pullwatchSettings.{name} is computed but not set")
        if isinstance(value, str):
            default = params[value].get("default") if value in params else value
            if isinstance(default, str) and default != defaults[name]:
                problems.append(
                    f"main.bicep: {name} defaults to {default!r}, shared/config.py says {defaults[name]!r}"
                )
    read_secrets = computed.get("PULLWATCH_READ_SECRETS")
    if not mentions(read_secrets, "readPullSecrets"):
        problems.append("main.bicep: PULLWATCH_READ_SECRETS must follow readPullSecrets")
    return problems


def check_function_app(files: Files) -> list[str]:
    problems = []
    doc = bicep(files, "infra/modules/app.bicep")
    resources = doc["resources"]
    site = next(body(d)[0] for d in resources.values() if d["type"] == "Microsoft.Web/sites")
    plan = next(body(d)[0] for d in resources.values() if d["type"] == "Microsoft.Web/serverfarms")
    if site.get("kind") != "functionapp,linux":
        problems.append("app.bicep: the site must be kind functionapp,linux")
    if plan.get("sku", {}).get("name") != "FC1" or plan.get("sku", {}).get("tier") != "FlexConsumption":
        problems.append("app.bicep: the plan must be Flex Consumption FC1")
    config = site["properties"].get("functionAppConfig") or {}
    runtime = config.get("runtime") or {}
    if runtime != {"name": "python", "version": "3.12"}:
        problems.append(f"app.bicep: runtime must be python 3.12, got {runtime}")
    auth = ((config.get("deployment") or {}).get("storage") or {}).get("authentication") or {}
    if auth.get("type") != "UserAssignedIdentity":
        problems.append("app.bicep: the deployment container must use the user-assigned identity")
    if accessor(site["properties"].get("keyVaultReferenceIdentity")) != "identity.id":
        problems.append("app.bicep: keyVaultReferenceIdentity must be the user-assigned identity")
    identities = [k.strip("'") for k in (site.get("identity") or {}).get("userAssignedIdentities") or {}]
    if identities != ["${identity.id}"]:
        problems.append("app.bicep: the site must run as the user-assigned identity only")
    if "'azd-service-name': 'api'" not in files["infra/modules/app.bicep"]:
        problems.append("app.bicep: the site must carry the azd-service-name tag 'api'")
    return problems


def check_event_grid(files: Files) -> list[str]:
    problems = []
    doc = bicep(files, "infra/eventgrid.bicep")
    variables = {k: v["value"] for k, v in (doc.get("variables") or {}).items()}
    modules = doc.get("modules") or {}
    delivered: list[str] = []
    for module, (topic_type, types_var) in {
        "registryTopics": ("Microsoft.ContainerRegistry.Registries", "registryEventTypes"),
        "clusterTopics": ("Microsoft.ContainerService.ManagedClusters", "clusterEventTypes"),
        "subscriptionTopics": ("Microsoft.Resources.Subscriptions", "subscriptionEventTypes"),
    }.items():
        if module not in modules:
            problems.append(f"eventgrid.bicep: module {module} is missing")
            continue
        params = body(modules[module])[0]["params"]
        if params.get("topicType") != topic_type:
            problems.append(f"eventgrid.bicep: {module} must create {topic_type} topics")
        if params.get("includedEventTypes") != types_var or types_var not in variables:
            problems.append(f"eventgrid.bicep: {module} must deliver exactly the types in {types_var}")
            continue
        for event_type in variables[types_var]:
            if not event_type.startswith(SOURCES[topic_type]):
                problems.append(f"eventgrid.bicep: {event_type} cannot come from a {topic_type} topic")
            delivered.append(event_type)
        if topic_type == "Microsoft.Resources.Subscriptions":
            if params.get("operationNames") != "handledOperations":
                problems.append("eventgrid.bicep: subscription topics must filter on handledOperations")
            if params.get("location") != "global":
                problems.append("eventgrid.bicep: subscription topics must be in location global")
    if sorted(delivered) != sorted(HANDLED_EVENT_TYPES) or len(delivered) != len(set(delivered)):
        missing = sorted(set(HANDLED_EVENT_TYPES) - set(delivered))
        extra = sorted(set(delivered) - set(HANDLED_EVENT_TYPES))
        problems.append(
            f"eventgrid.bicep: event types drift from HANDLED_EVENT_TYPES (missing {missing}, extra {extra})"
        )
    operations = variables.get("handledOperations") or []
    if sorted(operations) != sorted(HANDLED_OPERATIONS):
        missing = sorted(set(HANDLED_OPERATIONS) - set(operations))
        extra = sorted(set(operations) - set(HANDLED_OPERATIONS))
        problems.append(
            f"eventgrid.bicep: operations drift from HANDLED_OPERATIONS (missing {missing}, extra {extra})"
        )
    if len(operations) > 25:
        problems.append(
            "eventgrid.bicep: Event Grid allows at most 25 advanced-filter values per subscription"
        )

    topic = bicep(files, "infra/modules/system-topic.bicep")
    filters = topic["variables"]["advancedFilters"]["value"]
    if not ('"StringIn"' in json.dumps(filters) and '"data.operationName"' in json.dumps(filters)):
        problems.append("system-topic.bicep: the operation filter must be StringIn on data.operationName")
    subs = [body(d)[0] for d in topic["resources"].values() if d["type"].endswith("/eventSubscriptions")]
    if len(subs) != 1:
        return [*problems, "system-topic.bicep: exactly one event subscription expected"]
    props = subs[0]["properties"]
    destination = props["destination"]
    function_name = (
        json.dumps(destination["properties"]["resourceId"]).rsplit("/functions/", 1)[-1].strip('"')
    )
    if destination["endpointType"] != "AzureFunction" or not re.search(
        rf'@app\.function_name\("{re.escape(function_name)}"\)\s*\n@app\.event_grid_trigger',
        files["function_app.py"],
    ):
        problems.append(
            f"system-topic.bicep: destination must be the Event Grid function, got {function_name!r}"
        )
    if props["filter"].get("includedEventTypes") != "includedEventTypes":
        problems.append("system-topic.bicep: includedEventTypes must be the module parameter")
    if props["filter"].get("advancedFilters") != "advancedFilters":
        problems.append("system-topic.bicep: advancedFilters must be the operation filter")
    if props.get("retryPolicy", {}).get("eventTimeToLiveInMinutes") != 1440:
        problems.append("system-topic.bicep: events must be retried for 24 hours")
    dead = props.get("deadLetterWithResourceIdentity") or {}
    if (dead.get("identity") or {}).get("type") != "SystemAssigned" or "deadLetterDestination" not in dead:
        problems.append("system-topic.bicep: dead-letter with the topic's system-assigned identity")
    return problems


def check_kubernetes_rbac(files: Files) -> list[str]:
    """The ClusterRole covers every kind the Kubernetes client lists; secrets: list only."""
    problems = []
    docs = [d for d in yaml.safe_load_all(files["infra/k8s/pullwatch-rbac.yaml"]) if d]
    reader = next(
        (d for d in docs if d["kind"] == "ClusterRole" and d["metadata"]["name"] == "pullwatch-reader"), None
    )
    if reader is None:
        return ["pullwatch-rbac.yaml: ClusterRole pullwatch-reader is missing"]
    granted: dict[str, set[str]] = {}
    for rule in reader["rules"]:
        for resource in rule["resources"]:
            granted.setdefault(resource, set()).update(rule["verbs"])
        if "*" in rule["resources"] or "*" in rule["verbs"] or "*" in rule["apiGroups"]:
            problems.append("pullwatch-rbac.yaml: no wildcards")
    for kind in LIST_PATHS:
        want = {"list"} if kind == "secrets" else {"get", "list"}
        if not want <= granted.get(kind, set()):
            problems.append(f"pullwatch-rbac.yaml: pullwatch-reader must allow {sorted(want)} on {kind}")
    if granted.get("secrets", set()) - {"list"}:
        problems.append("pullwatch-rbac.yaml: secrets beyond list belong in pullwatch-pull-secrets.yaml")
    for doc in docs:
        if doc["kind"] == "ClusterRole":
            for rule in doc["rules"]:
                if {"create", "delete", "update", "patch"} & set(rule["verbs"]):
                    problems.append(
                        f"pullwatch-rbac.yaml: ClusterRole {doc['metadata']['name']} must not write"
                    )
    probe = next(
        (d for d in docs if d["kind"] == "Role" and d["metadata"]["name"] == "pullwatch-probe"), None
    )
    if probe is None or probe["metadata"].get("namespace") != "pullwatch-probe":
        problems.append("pullwatch-rbac.yaml: Role pullwatch-probe in namespace pullwatch-probe is missing")
    secrets = [d for d in yaml.safe_load_all(files["infra/k8s/pullwatch-pull-secrets.yaml"]) if d]
    rules = [r for d in secrets if d["kind"] == "ClusterRole" for r in d["rules"]]
    if rules != [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]:
        problems.append("pullwatch-pull-secrets.yaml: must grant get on secrets and nothing else")
    return problems


def check_deployment_files(files: Files) -> list[str]:
    problems = []
    manifest = yaml.safe_load(files["azure.yaml"])
    api = (manifest.get("services") or {}).get("api") or {}
    if api != {"project": ".", "language": "python", "host": "function"}:
        problems.append(
            f"azure.yaml: service api must be project ., language python, host function; got {api}"
        )
    if (manifest.get("infra") or {}).get("path") != "infra":
        problems.append("azure.yaml: infra path must be infra")
    if "PULLWATCH_DEPLOY_EVENT_GRID=true" not in json.dumps(manifest.get("hooks", {}).get("postdeploy", {})):
        problems.append("azure.yaml: postdeploy must deploy Event Grid after the code")
    main = bicep(files, "infra/main.bicep")
    params = main.get("parameters") or {}
    text = files["infra/main.bicepparam"]
    if not re.search(r"^using 'main\.bicep'", text, re.M):
        problems.append("main.bicepparam: must say using 'main.bicep'")
    set_params = set(re.findall(r"^param (\w+)\s*=", text, re.M))
    for name in set_params - params.keys():
        problems.append(f"main.bicepparam: {name} is not a parameter of main.bicep")
    for name, decl in params.items():
        if "default" not in decl and name not in set_params:
            problems.append(f"main.bicepparam: required parameter {name} is not set")
    modules = main.get("modules") or {}
    event_grid = modules.get("eventGrid")
    if event_grid is None or not mentions(body(event_grid)[1], "deployEventGrid"):
        problems.append("main.bicep: eventgrid.bicep must be deployed only when deployEventGrid")
    return problems


CHECKS: dict[str, Callable[[Files], list[str]]] = {
    "roles": check_roles,
    "identity wiring": check_identity_wiring,
    "no keys": check_no_keys,
    "app settings": check_app_settings,
    "function app": check_function_app,
    "event grid": check_event_grid,
    "kubernetes rbac": check_kubernetes_rbac,
    "deployment files": check_deployment_files,
}


# ---------------------------------------------------------------- tests


@pytest.fixture(scope="module")
def files() -> dict[str, str]:
    return load_files()


def test_every_bicep_file_parses(files: Files) -> None:
    paths = bicep_files(files)
    assert "infra/main.bicep" in paths and "infra/eventgrid.bicep" in paths
    for path in paths:
        bicep(files, path)


@pytest.mark.parametrize("check", sorted(CHECKS))
def test_infra_meets(check: str, files: Files) -> None:
    assert CHECKS[check](files) == []


def _mutated(files: Files, path: str, old: str, new: str) -> dict[str, str]:
    assert old in files[path], f"mutation target not found in {path}: {old!r}"
    return {**files, path: files[path].replace(old, new, 1)}


CONTRIBUTOR_ON_SUBSCRIPTION = """
resource contributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(subscription().id, principalId, 'contributor')
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', 'b24988ac-6180-42a0-ab88-20f7382dd24c')
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}
"""


def test_added_contributor_is_caught(files: Files) -> None:
    path = "infra/modules/subscription-reader.bicep"
    mutated = {**files, path: files[path] + CONTRIBUTOR_ON_SUBSCRIPTION}
    problems = check_roles(mutated)
    assert any("Contributor, which pullwatch must never hold" in p for p in problems), problems


def test_role_at_wider_scope_is_caught(files: Files) -> None:
    # Storage Blob Data Contributor for the dead-letter writers moved from the container to the account.
    mutated = _mutated(
        files, "infra/modules/deadletter-access.bicep", "  scope: container\n", "  scope: storage\n"
    )
    problems = check_roles(mutated)
    assert any("scoped to Microsoft.Storage/storageAccounts, expected" in p for p in problems), problems


def test_missing_role_is_caught(files: Files) -> None:
    path = "infra/modules/registry-access.bicep"
    text = files[path]
    start = text.index("resource repositoryReader")
    mutated = {**files, path: text[:start]}
    assert any(f"role {ACR_REPOSITORY_READER} is missing" in p for p in check_roles(mutated))


def test_unconditional_secret_read_is_caught(files: Files) -> None:
    mutated = _mutated(
        files,
        "infra/modules/cluster-access.bicep",
        "= if (azureRbac && readPullSecrets) {",
        "= if (azureRbac) {",
    )
    assert any("must be conditional on readPullSecrets" in p for p in check_roles(mutated))


def test_removed_setting_is_caught(files: Files) -> None:
    mutated = _mutated(
        files,
        "infra/modules/app.bicep",
        """        {
          name: 'PULLWATCH_SLOW_MS'
          value: pullwatchSettings.PULLWATCH_SLOW_MS
        }
""",
        "",
    )
    problems = check_app_settings(mutated)
    assert any("PULLWATCH_SLOW_MS (read by shared/config.py) is not set" in p for p in problems), problems


def test_default_drift_is_caught(files: Files) -> None:
    mutated = _mutated(
        files,
        "infra/main.bicep",
        "param podGraceSeconds string = '300'",
        "param podGraceSeconds string = '30'",
    )
    problems = check_app_settings(mutated)
    assert any("PULLWATCH_POD_GRACE_SECONDS defaults to '30'" in p for p in problems), problems


def test_storage_key_is_caught(files: Files) -> None:
    mutated = _mutated(
        files,
        "infra/modules/app.bicep",
        "          value: storage.name\n",
        "          value: 'DefaultEndpointsProtocol=https;AccountName=${storage.name};AccountKey=${storage.listKeys().keys[0].value}'\n",
    )
    problems = check_no_keys(mutated)
    assert any("AccountKey" in p for p in problems) and any("listKeys" in p for p in problems), problems
    mutated = _mutated(
        files, "infra/modules/app.bicep", "allowSharedKeyAccess: false", "allowSharedKeyAccess: true"
    )
    assert any("allowSharedKeyAccess must be False" in p for p in check_no_keys(mutated))


def test_event_type_drift_is_caught(files: Files) -> None:
    mutated = _mutated(files, "infra/eventgrid.bicep", "  'Microsoft.ContainerRegistry.ImageDeleted'\n", "")
    problems = check_event_grid(mutated)
    assert any("missing ['Microsoft.ContainerRegistry.ImageDeleted']" in p for p in problems), problems
    mutated = _mutated(
        files,
        "infra/eventgrid.bicep",
        "  'Microsoft.ContainerService.NodePoolRollingFailed'\n",
        "  'Microsoft.ContainerService.NodePoolRollingFailed'\n  'Microsoft.ContainerService.ClusterSupportEnded'\n",
    )
    assert any(
        "extra ['Microsoft.ContainerService.ClusterSupportEnded']" in p for p in check_event_grid(mutated)
    )


def test_operation_drift_is_caught(files: Files) -> None:
    mutated = _mutated(
        files, "infra/eventgrid.bicep", "  'Microsoft.Authorization/roleAssignments/delete'\n", ""
    )
    problems = check_event_grid(mutated)
    assert any("missing ['Microsoft.Authorization/roleAssignments/delete']" in p for p in problems), problems


def test_wrong_runtime_is_caught(files: Files) -> None:
    mutated = _mutated(files, "infra/modules/app.bicep", "version: '3.12'", "version: '3.13'")
    assert any("python 3.12" in p for p in check_function_app(mutated))


def test_kubernetes_rbac_drift_is_caught(files: Files) -> None:
    path = "infra/k8s/pullwatch-rbac.yaml"
    mutated = _mutated(files, path, 'resources: ["jobs", "cronjobs"]', 'resources: ["jobs"]')
    assert any("on cronjobs" in p for p in check_kubernetes_rbac(mutated))
    mutated = _mutated(
        files,
        path,
        'resources: ["secrets"]\n    verbs: ["list"]',
        'resources: ["secrets"]\n    verbs: ["get", "list"]',
    )
    assert any("secrets beyond list" in p for p in check_kubernetes_rbac(mutated))


@pytest.mark.slow
def test_checkov_finds_nothing_unjustified() -> None:
    """checkov's Bicep checks pass; every skip carries a reason in the Bicep (checkov:skip=ID:reason)."""
    if not CHECKOV.exists():
        pytest.fail("checkov is not installed: run `make setup` (it installs checkov into .venv-tools)")
    env = {**os.environ, "BC_SKIP_MAPPING": "TRUE", "LOG_LEVEL": "WARNING"}
    run = subprocess.run(
        [str(CHECKOV), "--framework", "bicep", "-d", str(INFRA), "--skip-download", "-o", "json"],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
        cwd=ROOT,
        check=False,
    )
    report = json.loads(run.stdout)
    report = report[0] if isinstance(report, list) else report
    results = report["results"]
    assert results.get("parsing_errors") == [], f"checkov could not parse {results['parsing_errors']}"
    failed = [
        f"{c['check_id']} {c['file_path']} {c['resource']}: {c['check_name']}"
        for c in results["failed_checks"]
    ]
    assert failed == []
    unjustified = [
        c["check_id"]
        for c in results["skipped_checks"]
        if len((c.get("check_result") or {}).get("suppress_comment") or "") < 20
    ]
    assert unjustified == [], "every checkov skip needs a reason"
    assert report["summary"]["passed"] > 0
