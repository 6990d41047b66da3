"""Certificate rotation without a restart, over real connections."""

from __future__ import annotations

import shutil
from pathlib import Path

from cryptography import x509

from dutyguard.admission.certs import CertFiles, make_certs
from tests.admission.support import default_app, running


def _served_serial(hook) -> int:  # type: ignore[no-untyped-def]
    conn = hook.connection()
    try:
        conn.request("GET", "/healthz")
        assert conn.getresponse().read() == b'{"status":"ok"}'
        der = conn.sock.getpeercert(binary_form=True)
    finally:
        conn.close()
    return x509.load_der_x509_certificate(der).serial_number


def test_rotated_certificate_is_served_without_a_restart(tmp_path: Path) -> None:
    tls = tmp_path / "tls"
    first = make_certs(tls, extra_names=("localhost",))
    app = default_app()
    with running(app, first) as hook:
        serial_1 = _served_serial(hook)
        assert serial_1 == x509.load_pem_x509_certificate(first.cert.read_bytes()).serial_number

        second = make_certs(tls, extra_names=("localhost",))  # same CA, new serving pair, in place
        assert not second.new_ca
        serial_2 = _served_serial(hook)

        assert serial_2 != serial_1
        assert serial_2 == x509.load_pem_x509_certificate(second.cert.read_bytes()).serial_number
        assert app.metrics.cert_reloads.value("ok") >= 1
        assert hook.server.started  # same server, same process, no restart


def test_half_written_rotation_keeps_serving_the_previous_pair(tmp_path: Path) -> None:
    tls = tmp_path / "tls"
    first = make_certs(tls, extra_names=("localhost",))
    (tmp_path / "other").mkdir()
    for name in ("ca.crt", "ca.key"):  # the same CA: the client keeps trusting the new pair
        shutil.copy(tls / name, tmp_path / "other" / name)
    other = make_certs(tmp_path / "other", extra_names=("localhost",))
    app = default_app()
    with running(app, first) as hook:
        serial_1 = _served_serial(hook)
        # A new key without its certificate (rotation caught mid-write): the pair does not match.
        shutil.copy(other.key, first.key)
        assert _served_serial(hook) == serial_1
        assert app.metrics.cert_reloads.value("error") >= 1
        # The matching certificate lands: now the new pair is served.
        shutil.copy(other.cert, first.cert)
        served = _served_serial(hook)
        assert served == x509.load_pem_x509_certificate(other.cert.read_bytes()).serial_number


def test_serving_certificate_names_the_service(certs: CertFiles) -> None:
    cert = x509.load_pem_x509_certificate(certs.cert.read_bytes())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    names = set(sans.get_values_for_type(x509.DNSName))
    assert {
        "dutyguard-admission.dutyguard-system.svc",
        "dutyguard-admission.dutyguard-system.svc.cluster.local",
        "dutyguard-admission.dutyguard-system",
        "dutyguard-admission",
    } <= names
    ca = x509.load_pem_x509_certificate(certs.ca_cert.read_bytes())
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    cert.verify_directly_issued_by(ca)
    assert certs.key.stat().st_mode & 0o077 == 0
    assert certs.ca_key.stat().st_mode & 0o077 == 0
