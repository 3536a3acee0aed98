"""The sandbox's certificate authority (trustme): one CA every stand-in's certificate chains to.

``ca_bundle`` is what the product is told to trust (``PULLWATCH_CA_BUNDLE``). ``untrusted()`` issues
from a second CA nobody trusts, for the ``tls`` network fault.
"""

from __future__ import annotations

import threading
from pathlib import Path

import trustme


class Pki:
    def __init__(self, workdir: Path) -> None:
        self.workdir = Path(workdir) / "pki"
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._ca = trustme.CA(organization_name="pullwatch sandbox CA")
        self._rogue = trustme.CA(organization_name="Unknown interception CA")
        self.ca_bundle = self.workdir / "ca.pem"
        self._ca.cert_pem.write_to_path(str(self.ca_bundle))
        self._count = 0
        self._lock = threading.Lock()

    @property
    def ca_pem(self) -> bytes:
        return self._ca.cert_pem.bytes()

    def _write(self, ca: trustme.CA, hosts: list[str], prefix: str) -> tuple[Path, Path]:
        with self._lock:
            self._count += 1
            n = self._count
        cert = ca.issue_cert(*hosts)
        cert_path = self.workdir / f"{prefix}{n}.crt"
        key_path = self.workdir / f"{prefix}{n}.key"
        # The chain (leaf + intermediates) so clients can verify up to the CA.
        cert_path.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
        cert.private_key_pem.write_to_path(str(key_path))
        key_path.chmod(0o600)
        return cert_path, key_path

    def issue(self, hosts: list[str]) -> tuple[Path, Path]:
        """A server certificate for ``hosts`` (names and IPs), signed by the sandbox CA."""
        return self._write(self._ca, list(dict.fromkeys([*hosts, "127.0.0.1", "localhost"])), "server")

    def untrusted(self, hosts: list[str]) -> tuple[Path, Path]:
        """A certificate for ``hosts`` from a CA nobody trusts (TLS interception / bad certificate)."""
        return self._write(self._rogue, list(dict.fromkeys([*hosts, "127.0.0.1"])), "rogue")
