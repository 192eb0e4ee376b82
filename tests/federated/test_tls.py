"""A device whose clock is hours off still accepts the coordinator's certificate (no TLS handshake needed:
the device's check is the web PKI verification, at the device's time, that ``cryptography`` runs here)."""

import datetime as dt
import ipaddress

import pytest
from cryptography import x509
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from federated import tls


@pytest.mark.parametrize("skew_hours", [-36, -5, 0, 7, 36])
def test_a_device_whose_clock_is_hours_off_accepts_the_coordinators_certificate(tmp_path, skew_hours):
    tls.init_ca(tmp_path / "tls")
    ca = x509.load_pem_x509_certificate((tmp_path / "tls" / tls.CA_CERT).read_bytes())
    server = x509.load_pem_x509_certificate((tmp_path / "tls" / tls.SERVER_CERT).read_bytes())
    device_now = dt.datetime.now(dt.UTC) + dt.timedelta(hours=skew_hours)
    verifier = (PolicyBuilder().store(Store([ca])).time(device_now)
                .build_server_verifier(x509.IPAddress(ipaddress.ip_address("127.0.0.1"))))
    try:
        verifier.verify(server, [])
    except VerificationError as exc:
        pytest.fail(f"a device {skew_hours:+d} h off refused the coordinator's certificate (valid from "
                    f"{server.not_valid_before_utc:%Y-%m-%d %H:%M}, device time {device_now:%Y-%m-%d %H:%M}): {exc}")


def test_a_device_clock_far_behind_is_still_refused(tmp_path):
    tls.init_ca(tmp_path / "tls")  # the margin is two days, not forever: a certificate has a start
    ca = x509.load_pem_x509_certificate((tmp_path / "tls" / tls.CA_CERT).read_bytes())
    server = x509.load_pem_x509_certificate((tmp_path / "tls" / tls.SERVER_CERT).read_bytes())
    device_now = dt.datetime.now(dt.UTC) - tls.CLOCK_SKEW_MARGIN - dt.timedelta(hours=1)
    verifier = (PolicyBuilder().store(Store([ca])).time(device_now)
                .build_server_verifier(x509.IPAddress(ipaddress.ip_address("127.0.0.1"))))
    with pytest.raises(VerificationError, match="not valid at validation time"):
        verifier.verify(server, [])


def test_the_certificates_make_a_mutual_tls_connection(tmp_path):
    """gRPC (BoringSSL) accepts what ``init_ca`` and ``issue_device`` make, and names the device to the server."""
    from concurrent import futures

    import grpc

    from common import messages
    from keyboard.agent import connect

    tls.init_ca(tmp_path / "tls")
    device_dir = tmp_path / "dev1"
    device_dir.mkdir()
    tls.issue_device(tmp_path / "tls", device_dir)
    creds = tls.ServerTLS.from_dir(tmp_path / "tls")
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    echo = grpc.unary_unary_rpc_method_handler(lambda request, context: tls.peer_device(context).encode())
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(messages.SERVICE, {"CheckIn": echo})])
    port = server.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials(
        [(creds.key, creds.cert)], root_certificates=creds.ca, require_client_auth=True))
    server.start()
    try:
        call = connect(f"127.0.0.1:{port}", device_dir / "tls").unary_unary(f"/{messages.SERVICE}/CheckIn")
        assert call(b"", timeout=30) == b"dev1"
    finally:
        server.stop(grace=0)
