"""The sandbox's Microsoft Entra ID: signing key, access tokens, and the endpoints SDKs call.

- ``issue(principal, audience)`` is the in-process path (a node's IMDS); ``verify(token)`` is how
  other stand-ins check a token (signature, expiry, issuer).
- HTTPS ``Server`` (``.url``): client credentials ``POST /<tenant>/oauth2/v2.0/token``, OpenID
  discovery ``GET /<tenant>/v2.0/.well-known/openid-configuration``, JWKS, and MSAL's instance
  discovery ``GET /common/discovery/instance``.
- Plain-HTTP ``Server`` (``.msi_url``): the managed-identity endpoint App Service / Azure Functions
  expose (``IDENTITY_ENDPOINT`` + ``IDENTITY_HEADER``, api-version 2019-08-01).

Tokens are RS256 JWTs with ``aud``, ``iss`` (``https://sts.windows.net/<tenant>/``), ``tid``,
``oid``, ``sub``, ``appid``, ``iat``, ``nbf``, ``exp``.
"""

from __future__ import annotations

import base64
import secrets
import time
import uuid
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from sandbox.httpserver import Request, Response, Server, json_response
from sandbox.metrics import RequestLog
from sandbox.pki import Pki
from sandbox.world import World

CLIENT_NAMESPACE = uuid.UUID("7b0f2a8e-51a4-4c7e-9b86-0f5e3b1a9d42")
ARM_AUDIENCE = "https://management.azure.com"
GRAPH_AUDIENCE = "https://graph.microsoft.com"
ACR_AUDIENCE = "https://containerregistry.azure.net"
AKS_AAD_SERVER_ID = "6dae42f8-4368-4678-94ff-3960e28e3630"


class EntraTokenError(Exception):
    """A token that is not valid: bad signature, expired, wrong issuer, not a JWT."""


def _b64url_uint(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _msi_error(status: int, message: str) -> Response:
    """A refusal from the managed-identity endpoint, in App Service's error envelope."""
    return json_response(
        status, {"statusCode": status, "message": message, "correlationId": str(uuid.uuid4())}
    )


def normalize_audience(resource: str) -> str:
    """``https://management.azure.com/.default`` and ``…/`` both mean ``https://management.azure.com``."""
    aud = resource.strip()
    if aud.endswith("/.default"):
        aud = aud[: -len("/.default")]
    return aud.rstrip("/")


class Entra:
    def __init__(self, world: World, log: RequestLog, pki: Pki) -> None:
        self.world = world
        self.log = log
        self.pki = pki
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = uuid.uuid4().hex
        self.identity_header = secrets.token_urlsafe(24)
        self._secrets: dict[str, str] = {}
        self._server: Server | None = None
        self._msi: Server | None = None

    # --- identities ---------------------------------------------------------------------------

    def object_id(self, principal: str) -> str:
        return self.world.principal_id(principal)

    def client_id(self, principal: str) -> str:
        """The application (client) id of a principal's service principal / managed identity."""
        return str(uuid.uuid5(CLIENT_NAMESPACE, f"{self.world.tenant}/{principal}"))

    def client_secret(self, principal: str) -> str:
        """The client secret of ``app`` or ``sp:<cluster>`` (random per Entra instance)."""
        if principal not in self._secrets:
            self._secrets[principal] = secrets.token_urlsafe(30)
        return self._secrets[principal]

    def principals(self) -> list[str]:
        out = ["app"]
        for name in self.world.clusters:
            out += [f"kubelet:{name}", f"sp:{name}"]
        return out

    def principal_of(self, object_id: str) -> str | None:
        wanted = object_id.lower()
        for principal in [*self.principals(), *(f"group:{g}" for g in self.world.groups)]:
            if self.object_id(principal) == wanted:
                return principal
        return None

    def principal_of_client(self, client_id: str) -> str | None:
        wanted = client_id.lower()
        for principal in self.principals():
            if self.client_id(principal) == wanted:
                return principal
        return None

    def display_name(self, principal: str) -> str:
        kind, _, name = principal.partition(":")
        if kind == "kubelet":
            return f"{name}-agentpool"
        if kind == "sp":
            return f"{name}-sp"
        if kind == "group":
            return name
        return "pullwatch"

    # --- tokens -------------------------------------------------------------------------------

    def secret_expired(self, principal: str) -> bool:
        """Whether ``principal`` is the service principal of a cluster whose client secret has expired."""
        if not principal.startswith("sp:"):
            return False
        cluster = self.world.clusters.get(principal[3:])
        return bool(cluster is not None and cluster.service_principal_secret_expired)

    def deleted(self, principal: str) -> bool:
        """Whether ``principal`` is the service principal of a cluster whose app was deleted."""
        if not principal.startswith("sp:"):
            return False
        cluster = self.world.clusters.get(principal[3:])
        return bool(cluster is not None and cluster.service_principal_deleted)

    def expired_secret_message(self, principal: str) -> str:
        return (
            f"AADSTS7000222: The provided client secret keys for app '{self.client_id(principal)}' are expired. "
            "Visit the Azure portal to create new keys for your app: https://aka.ms/NewClientSecret, or consider "
            "using certificate credentials for added security: https://aka.ms/certCreds."
        )

    def issue(self, principal: str, audience: str, tenant: str | None = None, lifetime: int = 3600) -> str:
        """A token for ``principal``; raises :class:`EntraTokenError` (AADSTS7000222) for a service principal
        whose secret has expired, as Entra refuses its client-credentials request."""
        if self.secret_expired(principal):
            raise EntraTokenError(self.expired_secret_message(principal))
        if self.deleted(principal):
            raise EntraTokenError(
                f"AADSTS700016: Application with identifier '{self.client_id(principal)}' was not found in the "
                f"directory '{self.world.tenant}'."
            )
        tid = tenant or self.world.tenant
        now = int(time.time())
        claims: dict[str, Any] = {
            "aud": normalize_audience(audience),
            "iss": f"https://sts.windows.net/{tid}/",
            "tid": tid,
            "oid": self.object_id(principal),
            "sub": self.object_id(principal),
            "appid": self.client_id(principal),
            "idtyp": "app",
            "ver": "1.0",
            "iat": now,
            "nbf": now - 5,
            "exp": now + lifetime,
            "uti": uuid.uuid4().hex,
        }
        return jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": self.kid, "x5t": self.kid})

    def verify(self, token: str) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._key.public_key(),
                algorithms=["RS256"],
                options={"verify_aud": False, "require": ["exp", "iat", "oid", "tid", "aud"]},
                leeway=5,
            )
        except jwt.PyJWTError as exc:
            raise EntraTokenError(f"invalid token: {exc.__class__.__name__}") from None
        if claims.get("iss") != f"https://sts.windows.net/{claims.get('tid')}/":
            raise EntraTokenError("invalid token: issuer does not match tenant")
        return claims

    def jwks(self) -> dict[str, Any]:
        numbers = self._key.public_key().public_numbers()
        return {
            "keys": [
                {
                    "kty": "RSA",
                    "use": "sig",
                    "kid": self.kid,
                    "x5t": self.kid,
                    "n": _b64url_uint(numbers.n),
                    "e": _b64url_uint(numbers.e),
                }
            ]
        }

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> Entra:
        cert = self.pki.issue(["login.microsoftonline.com", "localhost"])
        self._server = Server(self._handle, cert=cert, name="entra").start()
        self._msi = Server(self._handle_msi, name="entra-msi").start()
        return self

    def stop(self) -> None:
        for server in (self._server, self._msi):
            if server is not None:
                server.stop()
        self._server = self._msi = None

    @property
    def url(self) -> str:
        assert self._server is not None, "Entra is not started"
        return self._server.url

    @property
    def msi_url(self) -> str:
        """The managed-identity endpoint (``IDENTITY_ENDPOINT``)."""
        assert self._msi is not None, "Entra is not started"
        return f"{self._msi.url}/msi/token"

    def env_for_app(self) -> dict[str, str]:
        """Settings that make azure-identity in the product use the app's identity here."""
        return {
            "IDENTITY_ENDPOINT": self.msi_url,
            "IDENTITY_HEADER": self.identity_header,
            "AZURE_TENANT_ID": self.world.tenant,
        }

    # --- HTTP ---------------------------------------------------------------------------------

    def _handle_msi(self, req: Request) -> Response:
        self.log.count("entra")
        if req.path.rstrip("/") != "/msi/token" or req.method != "GET":
            return json_response(404, {"error": "not_found", "error_description": f"No route for {req.path}"})
        if req.header("X-IDENTITY-HEADER") != self.identity_header:
            return _msi_error(401, "Unauthorized: X-IDENTITY-HEADER is missing or does not match")
        if req.arg("api-version") != "2019-08-01":
            return _msi_error(400, "api-version must be 2019-08-01")
        resource = req.arg("resource")
        if not resource:
            return _msi_error(400, "The 'resource' parameter is required")
        client_id = req.arg("client_id")
        if client_id and client_id.lower() != self.client_id("app"):
            return _msi_error(
                400,
                "No User Assigned or Delegated Managed Identity found for specified ClientId/ResourceId/PrincipalId.",
            )
        lifetime = 3600
        token = self.issue("app", resource, lifetime=lifetime)
        return json_response(
            200,
            {
                "access_token": token,
                "expires_on": str(int(time.time()) + lifetime),
                "resource": resource,
                "token_type": "Bearer",
                "client_id": self.client_id("app"),
            },
        )

    def _handle(self, req: Request) -> Response:
        self.log.count("entra")
        parts = [p for p in req.path.split("/") if p]
        if req.method == "GET" and parts[:3] == ["common", "discovery", "instance"]:
            return self._instance_discovery(req)
        if (
            len(parts) >= 1
            and req.method == "GET"
            and parts[1:]
            in (["v2.0", ".well-known", "openid-configuration"], [".well-known", "openid-configuration"])
        ):
            return json_response(200, self._openid_configuration(req, parts[0]))
        if len(parts) >= 1 and req.method == "GET" and parts[1:] == ["discovery", "v2.0", "keys"]:
            return json_response(200, self.jwks())
        if len(parts) == 4 and req.method == "POST" and parts[1:] == ["oauth2", "v2.0", "token"]:
            return self._client_credentials(req, parts[0])
        return json_response(404, {"error": "not_found", "error_description": f"No route for {req.path}"})

    def _base(self, req: Request) -> str:
        host = req.header("Host") or self.url.split("://", 1)[1]
        return f"https://{host}"

    def _openid_configuration(self, req: Request, tenant: str) -> dict[str, Any]:
        base = self._base(req)
        tid = self.world.tenant if tenant in ("common", "organizations") else tenant
        return {
            "token_endpoint": f"{base}/{tid}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": [
                "client_secret_post",
                "private_key_jwt",
                "client_secret_basic",
            ],
            "jwks_uri": f"{base}/{tid}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": f"{base}/{tid}/v2.0",
            "request_uri_parameter_supported": False,
            "userinfo_endpoint": f"{base}/oidc/userinfo",
            "authorization_endpoint": f"{base}/{tid}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{base}/{tid}/oauth2/v2.0/devicecode",
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "end_session_endpoint": f"{base}/{tid}/oauth2/v2.0/logout",
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "tid", "oid"],
            "tenant_region_scope": "EU",
            "cloud_instance_name": "microsoftonline.com",
        }

    def _instance_discovery(self, req: Request) -> Response:
        host = self._base(req).split("://", 1)[1]
        return json_response(
            200,
            {
                "tenant_discovery_endpoint": f"https://{host}/{self.world.tenant}/v2.0/.well-known/openid-configuration",
                "api-version": "1.1",
                "metadata": [{"preferred_network": host, "preferred_cache": host, "aliases": [host]}],
            },
        )

    def _aad_error(self, status: int, error: str, code: int, description: str) -> Response:
        trace, corr = str(uuid.uuid4()), str(uuid.uuid4())
        stamp = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime())
        return json_response(
            status,
            {
                "error": error,
                "error_description": f"AADSTS{code}: {description} Trace ID: {trace} Correlation ID: {corr} "
                f"Timestamp: {stamp}",
                "error_codes": [code],
                "timestamp": stamp,
                "trace_id": trace,
                "correlation_id": corr,
                "error_uri": f"https://login.microsoftonline.com/error?code={code}",
            },
        )

    def _client_credentials(self, req: Request, tenant: str) -> Response:
        form = {k: v[0] for k, v in req.form().items() if v}
        if tenant.lower() not in (self.world.tenant.lower(), "organizations"):
            return self._aad_error(
                400,
                "invalid_request",
                90002,
                f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID "
                "and are signing into the correct cloud.",
            )
        if form.get("grant_type") != "client_credentials":
            return self._aad_error(
                400, "unsupported_grant_type", 70003, "The app requested an unsupported grant type."
            )
        client_id = form.get("client_id", "")
        principal = self.principal_of_client(client_id)
        if principal is None or not (principal == "app" or principal.startswith("sp:")):
            return self._aad_error(
                400,
                "unauthorized_client",
                700016,
                f"Application with identifier '{client_id}' was not found in the directory "
                f"'{self.world.tenant}'.",
            )
        if self.secret_expired(principal):
            message = self.expired_secret_message(principal).removeprefix("AADSTS7000222: ")
            return self._aad_error(401, "invalid_client", 7000222, message)
        if not secrets.compare_digest(form.get("client_secret", ""), self.client_secret(principal)):
            return self._aad_error(
                401,
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request "
                f"is the client secret value, not the client secret ID, for a secret added "
                f"to app '{client_id}'.",
            )
        scope = form.get("scope", "")
        resources = [s for s in scope.split() if s not in ("openid", "profile", "offline_access")]
        if len(resources) != 1 or not resources[0].endswith("/.default"):
            return self._aad_error(
                400,
                "invalid_scope",
                1002012,
                f"The provided value for scope {scope} is not valid. Client credential flows "
                "must have a scope value with /.default suffixed to the resource identifier "
                "(application ID URI).",
            )
        lifetime = 3599
        token = self.issue(principal, resources[0], lifetime=lifetime)
        return json_response(
            200,
            {
                "token_type": "Bearer",
                "expires_in": lifetime,
                "ext_expires_in": lifetime,
                "access_token": token,
            },
        )
