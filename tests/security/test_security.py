"""TLS, mutual TLS and bearer tokens on a real gRPC server on loopback (gan_common.security)."""

from __future__ import annotations

from concurrent import futures

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from gan_common import security
from gan_common.config_cli import ConfigError
from tests.security.certificates import CertificateAuthority

PROTECTED = "/test.Echo/Control"
OPEN = "/test.Echo/Open"
TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pki")
    ca, rogue = CertificateAuthority(folder, "test-ca"), CertificateAuthority(folder, "rogue-ca")
    token_file = folder / "token"
    token_file.write_text(TOKEN + "\n")
    return {"ca": ca.cert_path, "server": ca.issue("server", server=True),
            "client": ca.issue("trusted-client", server=False), "rogue": rogue.issue("rogue-client", server=False),
            "token_file": token_file}


def start(server_security: security.ServerSecurity, local_without_credentials: bool = False):
    """A server with an open and a protected echo method, plus standard health checking."""
    def echo(request: bytes, context) -> bytes:
        return request

    handler = grpc.method_handlers_generic_handler("test.Echo", {
        "Open": grpc.unary_unary_rpc_method_handler(echo),
        "Control": grpc.unary_unary_rpc_method_handler(echo),
    })
    interceptor = server_security.interceptor(lambda method: method == PROTECTED, local_without_credentials)
    server = grpc.server(futures.ThreadPoolExecutor(4), interceptors=[interceptor] if interceptor else [])
    server.add_generic_rpc_handlers([handler])
    health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), server)
    port = security.add_port(server, "127.0.0.1:0", server_security.validate_security("127.0.0.1"))
    server.start()
    return server, f"127.0.0.1:{port}"


def call(channel: grpc.Channel, method: str, timeout: float = 5) -> bytes:
    return channel.unary_unary(method)(b"ping", timeout=timeout)


@pytest.fixture
def servers():
    started = []
    yield lambda *args: started.append(start(*args)) or started[-1][1]
    for server, _ in started:
        server.stop(0)


def test_token_guards_protected_methods_only(servers, pki):
    target = servers(security.ServerSecurity(token_file=str(pki["token_file"])))
    with security.client_channel(target) as anonymous:
        assert call(anonymous, OPEN) == b"ping"
        with pytest.raises(grpc.RpcError) as refused:
            call(anonymous, PROTECTED)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "Bearer" in refused.value.details()
        health_stub = health_pb2_grpc.HealthStub(anonymous)  # probes stay open
        assert health_stub.Check(health_pb2.HealthCheckRequest(), timeout=5).status == health_pb2.HealthCheckResponse.SERVING
    with security.client_channel(target, token="wrong") as wrong:
        with pytest.raises(grpc.RpcError) as denied:
            call(wrong, PROTECTED)
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with security.client_channel(target, token=TOKEN) as right:
        assert call(right, PROTECTED) == b"ping"


def test_tls_serves_encrypted_and_refuses_plaintext_callers(servers, pki):
    cert, key = pki["server"]
    target = servers(security.ServerSecurity(tls_cert=str(cert), tls_key=str(key)))
    with security.client_channel(target, tls_ca=str(pki["ca"])) as secure:
        assert call(secure, PROTECTED) == b"ping"  # nothing protected without a token or client CA
    with security.client_channel(target) as plaintext:
        with pytest.raises(grpc.RpcError) as failed:
            call(plaintext, OPEN, timeout=3)
        assert failed.value.code() == grpc.StatusCode.UNAVAILABLE


def test_mutual_tls_admits_only_certificates_of_the_client_ca(servers, pki):
    cert, key = pki["server"]
    target = servers(security.ServerSecurity(tls_cert=str(cert), tls_key=str(key), tls_client_ca=str(pki["ca"])))
    client_cert, client_key = pki["client"]
    with security.client_channel(target, str(pki["ca"]), str(client_cert), str(client_key)) as trusted:
        assert call(trusted, PROTECTED) == b"ping"
    rogue_cert, rogue_key = pki["rogue"]
    for credentials in ((), (str(rogue_cert), str(rogue_key))):  # no certificate, a stranger's certificate
        with security.client_channel(target, str(pki["ca"]), *credentials) as stranger:
            with pytest.raises(grpc.RpcError) as refused:
                call(stranger, OPEN, timeout=3)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE  # the handshake fails


def test_mutual_tls_identity_allow_list(servers, pki):
    cert, key = pki["server"]
    target = servers(security.ServerSecurity(tls_cert=str(cert), tls_key=str(key), tls_client_ca=str(pki["ca"]),
                                             allowed_identities="operator"))
    client_cert, client_key = pki["client"]
    with security.client_channel(target, str(pki["ca"]), str(client_cert), str(client_key)) as trusted:
        assert call(trusted, OPEN) == b"ping"
        with pytest.raises(grpc.RpcError) as denied:
            call(trusted, PROTECTED)
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "trusted-client" in denied.value.details()


@pytest.mark.parametrize("settings, host, message", [
    ({}, "0.0.0.0", "refusing to serve plaintext on 0.0.0.0"),
    ({"tls_cert": "a.crt"}, "127.0.0.1", "go together"),
    ({"tls_client_ca": "ca.crt"}, "127.0.0.1", "needs --tls-cert"),
    ({"allowed_identities": "x"}, "127.0.0.1", "needs --tls-client-ca"),
    ({"token_file": "/nonexistent/token"}, "127.0.0.1", "cannot read the token file /nonexistent/token"),
])
def test_insecure_or_incomplete_settings_are_refused_with_a_reason(settings, host, message):
    with pytest.raises(ConfigError, match=message):
        security.ServerSecurity(**settings).validate_security(host)


def test_plaintext_beyond_loopback_only_when_asked(tmp_path):
    assert security.ServerSecurity(allow_insecure=True).validate_security("0.0.0.0")
    for host in ("127.0.0.1", "localhost", "::1", "[::1]"):
        assert security.ServerSecurity().validate_security(host)
    empty = tmp_path / "empty-token"
    empty.write_text("  \n")
    with pytest.raises(ConfigError, match="is empty"):
        security.ServerSecurity(token_file=str(empty)).validate_security("127.0.0.1")


def test_without_credentials_configured_protected_methods_can_be_local_only(servers):
    target = servers(security.ServerSecurity(), True)
    with security.client_channel(target) as local:
        assert call(local, PROTECTED) == b"ping"  # loopback caller, nothing configured
    assert security._is_loopback_peer("ipv6:[::1]:4000") and security._is_loopback_peer("ipv4:127.0.0.1:1")
    assert not security._is_loopback_peer("ipv4:10.0.0.7:4000")
