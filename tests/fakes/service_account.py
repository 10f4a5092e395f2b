"""A throwaway Google service account: fresh RSA key pair, JSON file in a temp directory.

The private key signs the sender's JWT assertions; FakeFcm checks them with the public key.
One key pair per process is enough (generating RSA keys is the slow part).
"""

from __future__ import annotations

import functools
import json
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

__all__ = ["GeneratedServiceAccount", "write_service_account"]


@dataclass(frozen=True)
class GeneratedServiceAccount:
    path: Path
    project_id: str
    client_email: str
    private_key_id: str
    public_key_pem: bytes


@functools.cache
def _key_pair() -> tuple[str, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private_pem, public_pem


def write_service_account(
    directory: Path, *, token_uri: str, project_id: str = "notifier-demo"
) -> GeneratedServiceAccount:
    """Write `<directory>/service-account.json` shaped like a file from the Google console."""
    private_pem, public_pem = _key_pair()
    key_id = secrets.token_hex(20)
    email = f"notifier@{project_id}.iam.gserviceaccount.com"
    data = {
        "type": "service_account",
        "project_id": project_id,
        "private_key_id": key_id,
        "private_key": private_pem,
        "client_email": email,
        "client_id": "100000000000000000001",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
        "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
        "universe_domain": "googleapis.com",
    }
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "service-account.json"
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")
    path.chmod(0o600)
    return GeneratedServiceAccount(path, project_id, email, key_id, public_pem)
