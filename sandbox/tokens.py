"""Registry token services: ACR's ``/oauth2/exchange`` + ``/oauth2/token`` and the Docker token flow.

The tokens are RS256 JWTs signed by :class:`TokenSigner`, whose self-signed certificate rides in
the ``x5c`` header and is the ``rootcertbundle`` of every sandbox ``docker-registry`` — so the real
registry verifies what these services grant (and answers ``insufficient_scope`` when a token holds
fewer repositories than asked for).

ACR (see tests/data/wire/acr-auth/NOTES.md):

- ``POST /oauth2/exchange`` (``grant_type=access_token&service&tenant&access_token``): the Entra
  token is checked with ``entra.verify``; ACR-audience tokens always, ARM-audience tokens only while
  ``authenticationAsArm`` is on; its ``tid`` must be the registry's tenant. → ``{"refresh_token"}``.
- ``POST /oauth2/token`` (``grant_type=refresh_token&service&scope…&refresh_token``): each
  ``repository:<repo>:pull`` scope is granted where ``rbac.decide_pull`` allows it; a subset is
  not an error (token-spec rule). → ``{"access_token"}``.
- ``GET /oauth2/token?service&scope`` with Basic auth (user ``00000000-0000-0000-0000-000000000000``
  + an ACR refresh token, as the kubelet credential provider hands to containerd) or anonymously
  (only when ``anonymousPullEnabled``).
- Refresh tokens carry the registry's role-assignment-mode *generation*; when
  ``roleAssignmentMode`` flips, older refresh tokens are refused with 401 (cached node credentials
  stop working until the kubelet restarts, as on Azure).

Docker token flow (generic registries and the Docker Hub stand-in): ``GET /token?service&scope``
with Basic auth checked against the registry's ``users``, or anonymous when ``anonymous: true``.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import logging
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Protocol

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from sandbox.httpserver import Request, Response
from sandbox.world import CLOUDS, Registry

log = logging.getLogger("sandbox.tokens")

ACR_ISSUER = "Azure Container Registry"
ACR_AUDIENCES = ("https://containerregistry.azure.net", "https://containerregistry.azure.net/")
#: ARM audiences ACR's /oauth2/exchange accepts in Azure; in a sovereign cloud, that cloud's ARM.
ARM_AUDIENCES = ("https://management.azure.com", "https://management.core.windows.net")


def _arm_audiences(login_server: str) -> tuple[str, ...]:
    for cloud in CLOUDS.values():
        if cloud.name != "AzureCloud" and login_server.lower().endswith(cloud.acr_suffix):
            return (cloud.arm_audience,)
    return ARM_AUDIENCES


#: The user name under which an ACR refresh token is used as a password (docs: "docker login").
ACR_REFRESH_TOKEN_USER = "00000000-0000-0000-0000-000000000000"
DOCKERHUB_SERVICE = "registry.docker.io"
DOCKERHUB_REALM = "https://auth.docker.io/token"
DOCKERHUB_ISSUER = "auth.docker.io"
ACCESS_TOKEN_SECONDS = 3600
REFRESH_TOKEN_SECONDS = 3 * 3600
DOCKER_TOKEN_SECONDS = 300
ACR_AUTH_HELP = "visit https://aka.ms/acr/authorization for more information."


class PullDecision(Protocol):
    @property
    def allowed(self) -> bool: ...

    @property
    def reason(self) -> str: ...


class PullDecider(Protocol):
    """The sandbox's RBAC model (``sandbox/rbac.py``)."""

    def decide_pull(
        self, object_id: str, tenant: str, registry: Registry, repository: str
    ) -> PullDecision: ...


class EntraVerifier(Protocol):
    """The sandbox's Entra ID (``sandbox/entra.py``): ``verify`` raises on a bad token."""

    def verify(self, token: str) -> dict[str, Any]: ...


class TokenSigner:
    """An RSA key with a self-signed certificate; signs registry JWTs with an ``x5c`` header."""

    def __init__(self, workdir: Path, name: str = "registry-token-signer") -> None:
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .sign(self._key, hashes.SHA256())
        )
        self._x5c = [base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()]
        # Key objects, not PEM: PyJWT would re-load (and re-validate, ~100 ms) a PEM key on every call.
        self._public_key = self._key.public_key()
        workdir.mkdir(parents=True, exist_ok=True)
        self.cert_path = workdir / f"{name}.pem"
        self.cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    def sign(self, claims: dict[str, Any]) -> str:
        return jwt.encode(claims, self._key, algorithm="RS256", headers={"x5c": self._x5c})

    def verify(self, token: str, *, audience: str, issuer: str) -> dict[str, Any]:
        """Claims of a token this signer issued (raises ``jwt.InvalidTokenError``)."""
        claims: dict[str, Any] = jwt.decode(
            token, self._public_key, algorithms=["RS256"], audience=audience, issuer=issuer, leeway=30
        )
        return claims

    def claims_unverified(self, token: str) -> dict[str, Any] | None:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._public_key,
                algorithms=["RS256"],
                options={"verify_aud": False, "verify_exp": False},
            )
        except jwt.InvalidTokenError:
            return None
        return claims

    def registry_token(
        self,
        *,
        issuer: str,
        audience: str,
        subject: str,
        access: list[dict[str, Any]],
        seconds: int,
        extra: dict[str, Any] | None = None,
    ) -> str:
        now = int(time.time())
        claims = {
            "jti": str(uuid.uuid4()),
            "sub": subject,
            "nbf": now - 5,
            "iat": now,
            "exp": now + seconds,
            "iss": issuer,
            "aud": audience,
            "access": access,
            **(extra or {}),
        }
        return self.sign(claims)


def errors_body(code: str, message: str, detail: Any = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if detail is not None:
        error["detail"] = detail
    return {"errors": [error]}


def error_response(
    status: int, code: str, message: str, detail: Any = None, headers: dict[str, str] | None = None
) -> Response:
    return Response(status, errors_body(code, message, detail), headers=headers or {})


def parse_scope(scope: str) -> tuple[str, str, list[str]] | None:
    """``repository:team/web:pull,push`` -> ("repository", "team/web", ["pull", "push"])."""
    kind, sep, rest = scope.partition(":")
    name, sep2, actions = rest.rpartition(":")
    if not sep or not sep2 or not name:
        return None
    return kind, name, [a for a in actions.split(",") if a]


def requested_scopes(values: list[str]) -> list[str]:
    # Scopes may be repeated, and some clients join several with spaces (OAuth2 style).
    return [part for value in values for part in value.split(" ") if part]


def basic_credentials(request: Request) -> tuple[str, str] | bool | None:
    """(user, password) from a Basic ``Authorization`` header, None without one, False if malformed."""
    header = request.header("Authorization")
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, password = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return False
    return (user, password) if sep else False


class AcrTokenService:
    """``/oauth2/exchange`` and ``/oauth2/token`` of one ACR (its world ``Registry`` is read live)."""

    def __init__(
        self, registry: Registry, signer: TokenSigner, entra: EntraVerifier, rbac: PullDecider
    ) -> None:
        self.registry = registry
        self.signer = signer
        self.entra = entra
        self.rbac = rbac
        self._lock = threading.Lock()
        self._mode_seen = registry.role_assignment_mode
        self._generation = 0

    @property
    def login_server(self) -> str:
        return self.registry.host

    def mode_generation(self) -> int:
        """Bumped whenever the registry's roleAssignmentMode differs from the last one seen."""
        with self._lock:
            if self.registry.role_assignment_mode != self._mode_seen:
                self._mode_seen = self.registry.role_assignment_mode
                self._generation += 1
            return self._generation

    def handle(self, request: Request) -> Response | None:
        if request.path == "/oauth2/exchange":
            if request.method != "POST":
                return error_response(405, "UNSUPPORTED", "The operation is unsupported.")
            return self.exchange(request)
        if request.path == "/oauth2/token":
            if request.method == "POST":
                return self.token_post(request)
            if request.method == "GET":
                return self.token_get(request)
            return error_response(405, "UNSUPPORTED", "The operation is unsupported.")
        return None

    def _wrong_service(self, form: dict[str, list[str]]) -> Response | None:
        """ACR's 400 for a ``service`` that names another registry (None: absent or this one)."""
        service = _first(form, "service")
        if service and service.lower() != self.login_server:
            return error_response(
                400, "UNAUTHORIZED", f"service {service!r} does not match {self.login_server}"
            )
        return None

    # -- /oauth2/exchange ------------------------------------------------------------------------

    def exchange(self, request: Request) -> Response:
        form = request.form()
        grant_type = _first(form, "grant_type")
        if grant_type not in ("access_token", "access_token_refresh_token"):
            return error_response(
                400, "UNSUPPORTED", f"grant type {grant_type or '(none)'!r} is not supported"
            )
        wrong_service = self._wrong_service(form)
        if wrong_service is not None:
            return wrong_service
        access_token = _first(form, "access_token")
        if not access_token:
            return error_response(400, "UNAUTHORIZED", "access_token is required")
        try:
            claims = self.entra.verify(access_token)
        except Exception as exc:  # EntraTokenError (and any token the verifier cannot read)
            log.debug("exchange refused for %s: %s", self.login_server, type(exc).__name__)
            return error_response(
                401, "UNAUTHORIZED", "invalid access token: the token could not be validated"
            )
        audience = str(claims.get("aud", ""))
        if audience.rstrip("/") in _arm_audiences(self.login_server):
            if not self.registry.authentication_as_arm:
                return error_response(
                    401,
                    "UNAUTHORIZED",
                    "Azure AD authentication as ARM is disabled for this registry: "
                    "use a token for audience https://containerregistry.azure.net",
                )
        elif audience not in ACR_AUDIENCES:
            return error_response(
                401, "UNAUTHORIZED", f"invalid access token: audience {audience!r} is not accepted"
            )
        tenant = str(claims.get("tid", ""))
        if tenant.lower() != self.registry.tenant.lower():
            return error_response(
                401, "UNAUTHORIZED", f"invalid access token: tenant {tenant!r} is not the registry's tenant"
            )
        object_id = str(claims.get("oid") or claims.get("sub") or "")
        if not object_id:
            return error_response(401, "UNAUTHORIZED", "invalid access token: no object id")
        refresh = self.signer.registry_token(
            issuer=ACR_ISSUER,
            audience=self.login_server,
            subject=object_id,
            access=[],
            seconds=REFRESH_TOKEN_SECONDS,
            extra={
                "version": "1.0",
                "grant_type": "refresh_token",
                "tenant": tenant,
                "permissions": {"actions": ["*"], "notActions": []},
                "roles": [],
                "mode_generation": self.mode_generation(),
            },
        )
        return Response(200, {"refresh_token": refresh})

    # -- /oauth2/token ---------------------------------------------------------------------------

    def token_post(self, request: Request) -> Response:
        form = request.form()
        grant_type = _first(form, "grant_type")
        if grant_type != "refresh_token":
            # containerd tries grant_type=password first and falls back to GET on 400 (as ACR answers).
            return error_response(
                400, "UNSUPPORTED", f"grant type {grant_type or '(none)'!r} is not supported"
            )
        wrong_service = self._wrong_service(form)
        if wrong_service is not None:
            return wrong_service
        return self._access_token_for(
            _first(form, "refresh_token") or "", requested_scopes(form.get("scope", []))
        )

    def token_get(self, request: Request) -> Response:
        scopes = requested_scopes(request.query.get("scope", []))
        credentials = basic_credentials(request)
        if credentials is False:
            return error_response(401, "UNAUTHORIZED", "authentication required, " + ACR_AUTH_HELP)
        if isinstance(credentials, tuple):
            user, password = credentials
            if user == ACR_REFRESH_TOKEN_USER:
                return self._access_token_for(password, scopes)
            # No admin user or repository-scoped tokens in the sandbox's world model.
            return error_response(401, "UNAUTHORIZED", "authentication required, " + ACR_AUTH_HELP)
        if not self.registry.anonymous_pull_enabled:
            return error_response(
                401, "UNAUTHORIZED", "authentication required, " + ACR_AUTH_HELP, _scope_detail(scopes)
            )
        access = _merge(
            [
                (name, ["pull"])
                for kind, name, actions in _parsed(scopes)
                if kind == "repository" and "pull" in actions
            ]
        )
        token = self.signer.registry_token(
            issuer=ACR_ISSUER,
            audience=self.login_server,
            subject="",
            access=access,
            seconds=ACCESS_TOKEN_SECONDS,
            extra={"version": "1.0", "grant_type": "access_token", "roles": []},
        )
        return Response(200, {"access_token": token})

    def _access_token_for(self, refresh_token: str, scopes: list[str]) -> Response:
        if not refresh_token:
            return error_response(401, "UNAUTHORIZED", "authentication required, " + ACR_AUTH_HELP)
        try:
            claims = self.signer.verify(refresh_token, audience=self.login_server, issuer=ACR_ISSUER)
        except jwt.InvalidTokenError:
            return error_response(401, "UNAUTHORIZED", "invalid refresh token, " + ACR_AUTH_HELP)
        if claims.get("grant_type") != "refresh_token":
            return error_response(401, "UNAUTHORIZED", "invalid refresh token, " + ACR_AUTH_HELP)
        if claims.get("mode_generation") != self.mode_generation():
            # roleAssignmentMode changed since this refresh token was issued: cached credentials die.
            return error_response(
                401,
                "UNAUTHORIZED",
                "the registry's role assignment mode changed: the refresh token is no "
                "longer valid, " + ACR_AUTH_HELP,
            )
        object_id, tenant = str(claims["sub"]), str(claims.get("tenant", ""))
        granted: list[tuple[str, list[str]]] = []
        for kind, name, actions in _parsed(scopes):
            if kind != "repository" or "pull" not in actions:
                continue  # catalog, push, delete: not granted by pull roles
            decision = self.rbac.decide_pull(object_id, tenant, self.registry, name)
            if decision.allowed:
                granted.append((name, ["pull"]))
        token = self.signer.registry_token(
            issuer=ACR_ISSUER,
            audience=self.login_server,
            subject=object_id,
            access=_merge(granted),
            seconds=ACCESS_TOKEN_SECONDS,
            extra={"version": "1.0", "grant_type": "access_token", "tenant": tenant, "roles": []},
        )
        return Response(200, {"access_token": token})


class DockerTokenService:
    """The Docker token flow (``GET <realm>?service&scope``) of a generic registry or Docker Hub."""

    def __init__(self, registry: Registry, signer: TokenSigner) -> None:
        self.registry = registry
        self.signer = signer

    @property
    def service(self) -> str:
        return DOCKERHUB_SERVICE if self.registry.kind == "dockerhub" else self.registry.host

    @property
    def issuer(self) -> str:
        return (
            DOCKERHUB_ISSUER if self.registry.kind == "dockerhub" else f"{self.registry.host} token service"
        )

    @property
    def realm(self) -> str:
        return DOCKERHUB_REALM if self.registry.kind == "dockerhub" else f"https://{self.registry.host}/token"

    def handle(self, request: Request) -> Response:
        if request.method not in ("GET", "POST"):
            return Response(405, {"details": "method not allowed"})
        if request.method == "POST":
            # OAuth2 POST flow is not offered: containerd falls back to GET on 404/405.
            return Response(404, {"details": "not found"})
        scopes = requested_scopes(request.query.get("scope", []))
        credentials = basic_credentials(request)
        subject = ""
        if credentials is False:
            return self._unauthorized()
        if isinstance(credentials, tuple):
            user, password = credentials
            if self.registry.users.get(user) != password:
                return self._unauthorized()
            subject = user
        elif not self.registry.anonymous:
            return self._unauthorized()
        access = _merge(
            [
                (name, ["pull"])
                for kind, name, actions in _parsed(scopes)
                if kind == "repository" and "pull" in actions
            ]
        )
        token = self.signer.registry_token(
            issuer=self.issuer,
            audience=self.service,
            subject=subject,
            access=access,
            seconds=DOCKER_TOKEN_SECONDS,
        )
        issued = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        return Response(
            200,
            {"token": token, "access_token": token, "expires_in": DOCKER_TOKEN_SECONDS, "issued_at": issued},
        )

    def _unauthorized(self) -> Response:
        if self.registry.kind == "dockerhub":
            return Response(401, {"details": "incorrect username or password"})
        return error_response(
            401,
            "UNAUTHORIZED",
            "authentication required",
            headers={"WWW-Authenticate": f'Basic realm="{self.registry.host}"'},
        )


def _first(form: dict[str, list[str]], name: str) -> str | None:
    values = form.get(name)
    return values[0] if values else None


def _parsed(scopes: list[str]) -> list[tuple[str, str, list[str]]]:
    return [p for p in (parse_scope(s) for s in scopes) if p is not None]


def _merge(grants: list[tuple[str, list[str]]]) -> list[dict[str, Any]]:
    merged: dict[str, list[str]] = {}
    for name, actions in grants:
        merged.setdefault(name, [])
        merged[name] = list(dict.fromkeys([*merged[name], *actions]))
    return [{"type": "repository", "name": name, "actions": actions} for name, actions in merged.items()]


def _scope_detail(scopes: list[str]) -> list[dict[str, str]] | None:
    detail = [
        {"Type": kind, "Name": name, "Action": action}
        for kind, name, actions in _parsed(scopes)
        for action in actions
    ]
    return detail or None
