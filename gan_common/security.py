"""Transport security and caller authentication shared by both services and the client.

- TLS: a server certificate and key; with a client CA as well, mutual TLS (callers must present a
  certificate that CA signed).
- Tokens: a shared secret read from a file (never from the image or a flag value, so it does not
  show in `ps`), sent by callers as `authorization: Bearer <token>` metadata.
- Protected methods (the trainer's control RPCs, or every sampler RPC when asked) need a valid token
  or a verified client certificate whose identity is allowed. No credentials at all is
  UNAUTHENTICATED; credentials that do not match are PERMISSION_DENIED. Health checking and
  reflection stay open so orchestrators can probe.
- Plaintext is served only on loopback unless explicitly allowed (`--allow-insecure`).
"""

from __future__ import annotations

import dataclasses
import hmac
import ipaddress
from pathlib import Path
from typing import Callable, Iterable

import grpc

from gan_common.config_cli import ConfigError, option

AUTHORIZATION_KEY = "authorization"
BEARER_PREFIX = "Bearer "
OPEN_SERVICES = ("/grpc.health.v1.Health/", "/grpc.reflection.")


def read_secret(path: str | Path, what: str) -> bytes:
    """A PEM file or token file's bytes, or a ConfigError that names the file and the problem."""
    try:
        data = Path(path).expanduser().read_bytes()
    except OSError as error:
        raise ConfigError(f"cannot read the {what} {path}: {error.strerror}") from None
    if not data.strip():
        raise ConfigError(f"the {what} {path} is empty")
    return data


def read_token(path: str | Path) -> str:
    return read_secret(path, "token file").decode("utf-8", errors="strict").strip()


def is_loopback(host: str) -> bool:
    if host in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclasses.dataclass(frozen=True)
class ServerSecurity:
    """What a server needs to know to listen securely and to check callers. Empty: plaintext, open.
    Service configs inherit these fields, so each is a flag and an environment variable."""

    tls_cert: str = option("", "PEM certificate to serve TLS with (with --tls-key)")
    tls_key: str = option("", "PEM private key of --tls-cert")
    tls_client_ca: str = option("", "PEM CA certificate: require callers to present a certificate it signed "
                                    "(mutual TLS)")
    token_file: str = option("", "file holding the bearer token that protected methods accept")
    allowed_identities: str = option("", "comma-separated client-certificate names (CN or SAN) allowed on "
                                         "protected methods; empty: any certificate the client CA signed")
    allow_insecure: bool = option(False, "serve plaintext on an address other than loopback (a network you trust)")

    @property
    def tls(self) -> bool:
        return bool(self.tls_cert)

    def validate_security(self, host: str) -> "ServerSecurity":
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ConfigError("--tls-cert and --tls-key go together")
        if self.tls_client_ca and not self.tls:
            raise ConfigError("--tls-client-ca (mutual TLS) needs --tls-cert and --tls-key")
        if self.allowed_identities and not self.tls_client_ca:
            raise ConfigError("--allowed-identities names client certificates: it needs --tls-client-ca")
        if not self.tls and not self.allow_insecure and not is_loopback(host):
            raise ConfigError(f"refusing to serve plaintext on {host}: give --tls-cert and --tls-key, listen on "
                              "127.0.0.1, or pass --allow-insecure on a network you trust")
        for path, what in ((self.tls_cert, "TLS certificate"), (self.tls_key, "TLS key"),
                           (self.tls_client_ca, "client CA certificate")):
            if path:
                read_secret(path, what)
        if self.token_file:
            read_token(self.token_file)
        return self

    def server_credentials(self) -> grpc.ServerCredentials | None:
        if not self.tls:
            return None
        pair = [(read_secret(self.tls_key, "TLS key"), read_secret(self.tls_cert, "TLS certificate"))]
        if self.tls_client_ca:
            return grpc.ssl_server_credentials(pair, read_secret(self.tls_client_ca, "client CA certificate"),
                                               require_client_auth=True)
        return grpc.ssl_server_credentials(pair)

    @property
    def authenticates(self) -> bool:
        return bool(self.token_file or self.tls_client_ca)

    def interceptor(self, protected: Callable[[str], bool], local_without_credentials: bool = False,
                    asyncio: bool = False) -> "AuthInterceptor | None":
        """An interceptor that guards the methods `protected` picks (for a grpc.aio server with
        `asyncio`). With no token and no client CA configured: None (all open), or, with
        `local_without_credentials`, callers on loopback only."""
        if not self.authenticates and not local_without_credentials:
            return None
        token = read_token(self.token_file) if self.token_file else None
        kind = AsyncAuthInterceptor if asyncio else AuthInterceptor
        return kind(protected, token, bool(self.tls_client_ca), self.identities)

    @property
    def identities(self) -> tuple[str, ...]:
        return tuple(name.strip() for name in self.allowed_identities.split(",") if name.strip())


def add_port(server: grpc.Server, address: str, security: ServerSecurity) -> int:
    """Binds `address` with TLS when configured; returns the port (0 when binding failed)."""
    credentials = security.server_credentials()
    if credentials is None:
        return server.add_insecure_port(address)
    return server.add_secure_port(address, credentials)


def _peer_names(context: grpc.ServicerContext) -> list[str]:
    """The verified client certificate's subject CN and SANs (empty without mutual TLS)."""
    auth = context.auth_context()
    names = auth.get("x509_common_name", []) + auth.get("x509_subject_alternative_name", [])
    return [name.decode() if isinstance(name, bytes) else str(name) for name in names]


def _is_loopback_peer(peer: str) -> bool:
    """gRPC peers look like 'ipv4:127.0.0.1:5000', 'ipv6:[::1]:5000' or 'unix:...'."""
    kind, _, address = peer.partition(":")
    if kind == "unix":
        return True
    host = address.rsplit(":", 1)[0].strip("[]")
    return kind in ("ipv4", "ipv6") and is_loopback(host)


class AuthInterceptor(grpc.ServerInterceptor):
    """Checks a bearer token or the client certificate before a protected method runs."""

    def __init__(self, protected: Callable[[str], bool], token: str | None, client_certificates: bool,
                 allowed_identities: Iterable[str] = ()) -> None:
        self.protected = protected
        self.token = token.encode() if token else None
        self.client_certificates = client_certificates
        self.allowed_identities = frozenset(allowed_identities)

    def _refusal(self, metadata: dict[str, str], context: grpc.ServicerContext) -> tuple[grpc.StatusCode, str] | None:
        header = metadata.get(AUTHORIZATION_KEY)
        if header is not None:
            presented = header[len(BEARER_PREFIX):] if header.startswith(BEARER_PREFIX) else header
            if self.token is not None and hmac.compare_digest(presented.encode(), self.token):
                return None
            return grpc.StatusCode.PERMISSION_DENIED, "the bearer token is not valid for this method"
        if self.token is None and not self.client_certificates:
            if _is_loopback_peer(context.peer()):
                return None
            return (grpc.StatusCode.UNAUTHENTICATED, "this method is open to callers on the same host only; "
                    "configure a token file (--token-file) or mutual TLS to call it from elsewhere")
        if self.client_certificates:
            names = _peer_names(context)
            if names and (not self.allowed_identities or self.allowed_identities.intersection(names)):
                return None
            if names:
                return (grpc.StatusCode.PERMISSION_DENIED,
                        f"client certificate {names[0]!r} is not allowed to call this method")
        return (grpc.StatusCode.UNAUTHENTICATED,
                "this method needs credentials: an 'authorization: Bearer <token>' header"
                + (" or an allowed client certificate" if self.client_certificates else ""))

    def _guarded(self, handler, handler_call_details, guard):
        """`handler` with its behaviour wrapped by `guard`, or as it is when the method is open."""
        method = handler_call_details.method
        if handler is None or method.startswith(OPEN_SERVICES) or not self.protected(method):
            return handler
        metadata = {key: value for key, value in handler_call_details.invocation_metadata
                    if isinstance(value, str)}
        # The certificate is only visible on the call's context, so the check wraps the behaviour.
        for kind in ("unary_unary", "unary_stream", "stream_unary", "stream_stream"):
            behaviour = getattr(handler, kind)
            if behaviour is not None:
                return handler._replace(**{kind: guard(behaviour, metadata)})
        return handler

    def intercept_service(self, continuation, handler_call_details):
        def guard(behaviour, metadata):
            def checked(request, context):
                refusal = self._refusal(metadata, context)
                if refusal is not None:
                    context.abort(*refusal)
                return behaviour(request, context)
            return checked

        return self._guarded(continuation(handler_call_details), handler_call_details, guard)


class AsyncAuthInterceptor(AuthInterceptor, grpc.aio.ServerInterceptor):
    """The same checks for an asyncio server (the sampler's), whose behaviours are coroutines."""

    async def intercept_service(self, continuation, handler_call_details):
        def guard(behaviour, metadata):
            async def checked(request, context):
                refusal = self._refusal(metadata, context)
                if refusal is not None:
                    await context.abort(*refusal)
                return await behaviour(request, context)
            return checked

        return self._guarded(await continuation(handler_call_details), handler_call_details, guard)


# ---- client side ----

def client_channel(target: str, tls_ca: str = "", tls_cert: str = "", tls_key: str = "", token: str = "",
                   options: list[tuple[str, object]] | None = None) -> grpc.Channel:
    """A channel to `target`: TLS when a CA is given (mutual when a certificate is too), and every call
    carrying the bearer token when one is given."""
    options = list(options or [])
    if bool(tls_cert) != bool(tls_key):
        raise ConfigError("a client certificate and its key go together")
    if tls_cert and not tls_ca:
        raise ConfigError("a client certificate needs the server's CA certificate (TLS) as well")
    if tls_ca:
        credentials = grpc.ssl_channel_credentials(
            read_secret(tls_ca, "CA certificate"),
            read_secret(tls_key, "client key") if tls_key else None,
            read_secret(tls_cert, "client certificate") if tls_cert else None)
        channel = grpc.secure_channel(target, credentials, options=options)
    else:
        channel = grpc.insecure_channel(target, options=options)
    if token:
        channel = grpc.intercept_channel(channel, _TokenInterceptor(token))
    return channel


class _TokenInterceptor(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):
    def __init__(self, token: str) -> None:
        self.header = (AUTHORIZATION_KEY, BEARER_PREFIX + token)

    def _with_token(self, details):
        # grpc hands interceptors its _ClientCallDetails namedtuple
        return details._replace(metadata=list(details.metadata or []) + [self.header])

    def intercept_unary_unary(self, continuation, client_call_details, request):
        return continuation(self._with_token(client_call_details), request)

    def intercept_unary_stream(self, continuation, client_call_details, request):
        return continuation(self._with_token(client_call_details), request)

