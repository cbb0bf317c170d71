"""bench.engines over tcp:// with TLS, against certificates shaped like docker-machine's.

docker-machine 0.16.2 (Go 1.12) makes a CA and server/client certificates without subject
or authority key identifiers (libmachine/cert/cert.go). Python 3.13 and later verify with
OpenSSL's VERIFY_X509_STRICT on, which rejects them. The certificates here are made the
same way (cryptography's CertificateBuilder adds no extension it is not asked for), served
by a real TLS listener on loopback that requires the client certificate, as dockerd
--tlsverify does. Our venv's Python is 3.11: the strict flag is set explicitly where 3.13
sets it by default, so the tests prove the fix where it matters.
"""
from __future__ import annotations

import contextlib
import datetime
import ipaddress
import json
import socket
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from bench import engines

API_VERSION = "1.40"  # boot2docker 19.03's engine


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _name(org: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, org)])


def _certificate(subject_key, issuer_key, *, org: str, issuer: str, ca: bool, usage: list,
                 addresses: list[str] = ()):
    """As libmachine/cert/cert.go's newCertificate: Organization only, 1080 days, basic
    constraints, key usages; no key identifiers."""
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder()
               .subject_name(_name(org)).issuer_name(_name(issuer))
               .public_key(subject_key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=1080))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=True,
                                            key_agreement=True, key_cert_sign=ca, content_commitment=False,
                                            data_encipherment=False, crl_sign=False, encipher_only=False,
                                            decipher_only=False), critical=True))
    if usage:
        builder = builder.add_extension(x509.ExtendedKeyUsage(usage), critical=False)
    if addresses:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(a)) for a in addresses]),
            critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write(path: Path, cert, key=None) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    if key is not None:
        path.with_name(path.name.replace("cert", "key")).write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption()))


def machine_certs(directory: Path, server_address: str = "127.0.0.1") -> Path:
    """ca.pem, server-cert.pem/-key.pem, cert.pem/key.pem as docker-machine lays them out,
    with its organisations (libmachine/cert/bootstrap.go, provision/utils.go): the CA is
    USER, the client USER.<bootstrap>, the engine USER.MACHINE."""
    directory.mkdir(parents=True)
    ca_key = _key()
    ca = _certificate(ca_key, ca_key, org="me", issuer="me", ca=True, usage=[])
    (directory / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    server_key, client_key = _key(), _key()
    _write(directory / "server-cert.pem",
           _certificate(server_key, ca_key, org="me.mhs-node1", issuer="me", ca=False,
                        usage=[ExtendedKeyUsageOID.SERVER_AUTH],
                        addresses=[server_address, "192.168.99.100"]), server_key)
    _write(directory / "cert.pem",
           _certificate(client_key, ca_key, org="me.<bootstrap>", issuer="me", ca=False,
                        usage=[ExtendedKeyUsageOID.CLIENT_AUTH]), client_key)
    return directory


class _Engine(BaseHTTPRequestHandler):
    """Enough of the Engine API for the SDK's client: /version and /_ping."""

    def do_GET(self):  # noqa: N802 - http.server's name
        path = self.path.split("?")[0]
        if path.endswith("/_ping"):
            body, kind = b"OK", "text/plain"
        elif path.endswith("/version"):
            body = json.dumps({"ApiVersion": API_VERSION, "Version": "19.03.12", "Os": "linux"}).encode()
            kind = "application/json"
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def tls_engine(certs: Path) -> Iterator[int]:
    """A TLS listener on 127.0.0.1 that requires a client certificate of the machine's CA
    (dockerd --tlsverify); yields its port."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certs / "server-cert.pem", certs / "server-key.pem")
    context.load_verify_locations(certs / "ca.pem")
    context.verify_mode = ssl.CERT_REQUIRED
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Engine)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def strict_by_default(monkeypatch):
    """ssl.create_default_context as Python 3.13 makes it: VERIFY_X509_STRICT on."""
    real = ssl.create_default_context

    def strict(*args, **kwargs):
        context = real(*args, **kwargs)
        context.verify_flags |= ssl.VERIFY_X509_STRICT
        return context
    monkeypatch.setattr(ssl, "create_default_context", strict)


def node(port: int, certs: Path, address: str = "127.0.0.1") -> dict:
    return {"name": "mhs-node1", "address": address, "docker_host": f"tcp://{address}:{port}",
            "tls_cert_path": str(certs), "ssh_key_path": None}


def handshake(context: ssl.SSLContext, port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname="127.0.0.1"):
        pass


def test_the_certificates_have_docker_machines_shape_that_strict_checks_reject(tmp_path):
    """The control: these certificates carry no key identifiers, and a strict context (what
    3.13 uses by default) refuses them; without the flag the same context accepts them."""
    certs = machine_certs(tmp_path / "certs")
    for name in ("ca.pem", "server-cert.pem", "cert.pem"):
        cert = x509.load_pem_x509_certificate((certs / name).read_bytes())
        oids = {ext.oid for ext in cert.extensions}
        assert x509.oid.ExtensionOID.SUBJECT_KEY_IDENTIFIER not in oids, name
        assert x509.oid.ExtensionOID.AUTHORITY_KEY_IDENTIFIER not in oids, name
    with tls_engine(certs) as port:
        strict = ssl.create_default_context(cafile=certs / "ca.pem")
        strict.verify_flags |= ssl.VERIFY_X509_STRICT
        strict.load_cert_chain(certs / "cert.pem", certs / "key.pem")
        with pytest.raises(ssl.SSLCertVerificationError, match="(?i)key identifier"):
            handshake(strict, port)
        lenient = ssl.create_default_context(cafile=certs / "ca.pem")
        lenient.load_cert_chain(certs / "cert.pem", certs / "key.pem")
        handshake(lenient, port)


def test_connect_verifies_machine_certificates_where_strict_is_the_default(tmp_path, strict_by_default):
    certs = machine_certs(tmp_path / "certs")
    assert ssl.create_default_context().verify_flags & ssl.VERIFY_X509_STRICT  # as on 3.13
    context = engines.tls_context(str(certs / "ca.pem"), str(certs / "cert.pem"), str(certs / "key.pem"))
    assert not context.verify_flags & ssl.VERIFY_X509_STRICT
    assert context.check_hostname and context.verify_mode == ssl.CERT_REQUIRED
    with tls_engine(certs) as port:
        client = engines.connect(node(port, certs))
        try:
            assert client.ping() is True
            assert client.api.api_version == API_VERSION
            assert client.version(api_version=False)["Version"] == "19.03.12"
        finally:
            client.close()


def test_connect_still_refuses_another_ca(tmp_path, strict_by_default):
    certs = machine_certs(tmp_path / "certs")
    other = machine_certs(tmp_path / "other")
    for name in ("cert.pem", "key.pem"):  # a client certificate the engine accepts...
        (other / name).write_bytes((certs / name).read_bytes())
    # ...but the engine's certificate is not of `other`'s CA.
    with tls_engine(certs) as port, \
            pytest.raises(engines.EngineError, match="(?i)mhs-node1.*certificate verify failed"):
        engines.connect(node(port, other))


def test_connect_still_checks_the_address(tmp_path, strict_by_default):
    """The engine's certificate names 127.0.0.1 and 192.168.99.100; reached as 127.0.0.2
    (also this machine), it is refused."""
    certs = machine_certs(tmp_path / "certs")
    # The listener is on 127.0.0.1 only: forward 127.0.0.2:PORT2 to it.
    with tls_engine(certs) as port, _forward("127.0.0.2", ("127.0.0.1", port)) as port2, \
            pytest.raises(engines.EngineError, match="(?i)mismatch|doesn't match|not valid for"):
        engines.connect(node(port2, certs, address="127.0.0.2"))


def test_unusable_tls_files_are_one_engine_error(tmp_path):
    certs = machine_certs(tmp_path / "certs")
    (certs / "key.pem").write_text("not a key\n")
    with pytest.raises(engines.EngineError, match="mhs-node1: unusable TLS files"):
        engines.connect(node(1, certs))


@contextlib.contextmanager
def _forward(address: str, target: tuple[str, int]) -> Iterator[int]:
    """A TCP relay from `address`:PORT to `target`; yields PORT."""
    listener = socket.socket()
    listener.bind((address, 0))
    listener.listen()
    stop = threading.Event()

    def pipe(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except (TimeoutError, OSError):
                continue
            upstream = socket.create_connection(target)
            for a, b in ((conn, upstream), (upstream, conn)):
                threading.Thread(target=pipe, args=(a, b), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        listener.close()
