"""TLS and tokens on the real services, called through the real client."""

from __future__ import annotations

import grpc
import pytest

from client import Credentials, GanServiceError, SamplerClient
from sampler_service.config import SamplerConfig
from sampler_service.server import SamplerServer
from tests.conftest import publish_tiny_generator
from tests.security.certificates import CertificateAuthority

TOKEN = "sampler-token"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pki")
    ca = CertificateAuthority(folder, "ca")
    (folder / "token").write_text(TOKEN)
    return {"ca": str(ca.cert_path), "server": ca.issue("sampler", server=True),
            "client": ca.issue("reporting-service", server=False), "token_file": str(folder / "token")}


@pytest.fixture
def secured_sampler(tmp_path, pki):
    publish_tiny_generator(tmp_path, 1)
    cert, key = pki["server"]
    config = SamplerConfig(store=str(tmp_path), port=0, poll_seconds=0.2, tls_cert=str(cert), tls_key=str(key),
                           tls_client_ca=pki["ca"], token_file=pki["token_file"]).validate()
    server = SamplerServer(config)
    server.start()
    yield f"127.0.0.1:{server.port}"
    server.stop(grace=1)


def test_sampler_over_mutual_tls_and_token(secured_sampler, pki):
    cert, key = pki["client"]
    with SamplerClient(secured_sampler, 30, Credentials(pki["ca"], str(cert), str(key))) as by_certificate:
        assert by_certificate.generate(2, seed=3).model_version == 1
        assert by_certificate.health() == "SERVING"


def test_sampler_refuses_callers_without_or_with_wrong_credentials(secured_sampler, pki):
    cert, key = pki["client"]
    with SamplerClient(secured_sampler, 30, Credentials(pki["ca"], str(cert), str(key), token="guess")) as wrong:
        with pytest.raises(GanServiceError) as denied:
            wrong.generate(1)
        assert denied.value.code == grpc.StatusCode.PERMISSION_DENIED
        assert wrong.health() == "SERVING"  # probes stay open
    with SamplerClient(secured_sampler, 5, Credentials(pki["ca"])) as no_certificate:
        with pytest.raises(GanServiceError) as refused:
            no_certificate.generate(1)
        assert refused.value.code == grpc.StatusCode.UNAVAILABLE  # the TLS handshake fails


def test_trainer_control_needs_the_token_and_status_stays_open(pki):
    import threading

    from client import TrainerClient
    from gan_common.security import ServerSecurity
    from trainer_service.control import ControlRequests
    from trainer_service.progress import ProgressTracker
    from trainer_service.server import create_server

    server, port = create_server(ProgressTracker(), dict, "127.0.0.1", 0, ControlRequests(threading.Event(), 100),
                                 ServerSecurity(token_file=pki["token_file"]))
    target = f"127.0.0.1:{port}"
    try:
        for credentials, code in ((None, grpc.StatusCode.UNAUTHENTICATED),
                                  (Credentials(token="guess"), grpc.StatusCode.PERMISSION_DENIED)):
            with TrainerClient(target, 10, credentials) as trainer:
                assert trainer.status().state  # reading progress needs no credentials
                with pytest.raises(GanServiceError) as refused:
                    trainer.set_publish_interval(50)
                assert refused.value.code == code
        with TrainerClient(target, 10, Credentials(token=TOKEN)) as operator:
            assert operator.set_publish_interval(50) == 100
    finally:
        server.stop(0)
