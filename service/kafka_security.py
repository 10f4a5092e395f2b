"""Connection security of the Kafka clients: TLS (CA, mTLS, hostname check) and SASL.

`KafkaSecurity.problems()` is run when Settings are built, so a wrong setting stops start-up
with a message naming the NOTIFIER_ variable; `client_security_options()` turns the settings
into aiokafka keyword arguments. Secrets (key password, SASL password) live in `SecretStr`
and are read from their files only when a client is built; no message here ever contains one.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from aiokafka.helpers import create_ssl_context
from pydantic import SecretStr

from service.errors import NotifierError

__all__ = ["KafkaSecurity", "KafkaSecurityError", "read_secret_file"]

Protocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]

_TLS = frozenset({"SSL", "SASL_SSL"})
_SASL = frozenset({"SASL_PLAINTEXT", "SASL_SSL"})


class KafkaSecurityError(NotifierError, ValueError):
    """A connection-security setting cannot work; the message names the variable(s)."""


def _var(name: str) -> str:
    return f"NOTIFIER_KAFKA_{name.upper()}"


def read_secret_file(path: Path) -> str:
    """A secret from a mounted file; one trailing newline (from `echo` or an editor) dropped."""
    return path.read_text(encoding="utf-8").removesuffix("\n").removesuffix("\r")


@dataclass(frozen=True)
class KafkaSecurity:
    protocol: Protocol = "PLAINTEXT"
    cafile: Path | None = None
    certfile: Path | None = None
    keyfile: Path | None = None
    key_password: SecretStr | None = None
    key_password_file: Path | None = None
    check_hostname: bool = True
    sasl_mechanism: SaslMechanism = "SCRAM-SHA-512"
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    sasl_password_file: Path | None = None
    sasl_allow_plaintext: bool = False

    @property
    def uses_tls(self) -> bool:
        return self.protocol in _TLS

    @property
    def uses_sasl(self) -> bool:
        return self.protocol in _SASL

    # -- validation ------------------------------------------------------------------------------

    def problems(self) -> list[str]:
        """Everything wrong with these settings, each naming its variable (empty: usable)."""
        out: list[str] = []
        self._tls_problems(out)
        self._sasl_problems(out)
        if not out and self.uses_tls:
            # Load CA, certificate and key now: a bad file or key password fails at start,
            # not at the first connection attempt minutes later.
            try:
                self.ssl_context()
            except KafkaSecurityError as exc:
                out.append(str(exc))
        return out

    def _tls_problems(self, out: list[str]) -> None:
        tls_files = {
            "ssl_cafile": self.cafile,
            "ssl_certfile": self.certfile,
            "ssl_keyfile": self.keyfile,
            "ssl_key_password_file": self.key_password_file,
        }
        if not self.uses_tls:
            given = [_var(n) for n, v in tls_files.items() if v is not None]
            if self.key_password is not None:
                given.append(_var("ssl_key_password"))
            if given:
                out.append(
                    f"{', '.join(given)} set but NOTIFIER_KAFKA_SECURITY_PROTOCOL={self.protocol}"
                    " does not use TLS (use SSL or SASL_SSL)"
                )
            return
        for name, path in tls_files.items():
            if path is not None:
                _check_readable(name, path, out)
        if self.keyfile is not None and self.certfile is None:
            out.append(f"{_var('ssl_keyfile')} set without {_var('ssl_certfile')}")
        if self.key_password is not None and self.key_password_file is not None:
            out.append(
                f"set only one of {_var('ssl_key_password')} and {_var('ssl_key_password_file')}"
            )
        if self.certfile is None and (self.key_password or self.key_password_file):
            out.append(f"a client key password is set without {_var('ssl_certfile')}")

    def _sasl_problems(self, out: list[str]) -> None:
        sasl_given = [
            _var(n)
            for n, v in (
                ("sasl_username", self.sasl_username),
                ("sasl_password", self.sasl_password),
                ("sasl_password_file", self.sasl_password_file),
            )
            if v is not None
        ]
        if not self.uses_sasl:
            if sasl_given:
                out.append(
                    f"{', '.join(sasl_given)} set but NOTIFIER_KAFKA_SECURITY_PROTOCOL="
                    f"{self.protocol} does not use SASL (use SASL_SSL)"
                )
            return
        if self.protocol == "SASL_PLAINTEXT" and not self.sasl_allow_plaintext:
            out.append(
                "NOTIFIER_KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT sends credentials unencrypted; "
                "use SASL_SSL, or set NOTIFIER_KAFKA_SASL_ALLOW_PLAINTEXT=true for a test cluster"
            )
        if not self.sasl_username:
            out.append(f"{_var('sasl_username')} is required with {self.protocol}")
        if self.sasl_password is not None and self.sasl_password_file is not None:
            out.append(f"set only one of {_var('sasl_password')} and {_var('sasl_password_file')}")
        elif self.sasl_password is None and self.sasl_password_file is None:
            out.append(
                f"{_var('sasl_password')} or {_var('sasl_password_file')} is required with "
                f"{self.protocol}"
            )
        elif self.sasl_password_file is not None:
            path = self.sasl_password_file
            if _check_readable("sasl_password_file", path, out) and not read_secret_file(path):
                out.append(f"{_var('sasl_password_file')}: the file is empty")
        elif self.sasl_password is not None and not self.sasl_password.get_secret_value():
            out.append(f"{_var('sasl_password')} is empty")

    # -- client options ------------------------------------------------------------------------

    def ssl_context(self) -> ssl.SSLContext:
        """The TLS context of every client: CA, optional client certificate, hostname check."""
        try:
            context: ssl.SSLContext = create_ssl_context(
                cafile=str(self.cafile) if self.cafile else None,
                certfile=str(self.certfile) if self.certfile else None,
                keyfile=str(self.keyfile) if self.keyfile else None,
                password=self._key_password(),
            )
        except (ssl.SSLError, OSError) as exc:
            # Which file is at fault: try the CA alone first. The OpenSSL reason never
            # contains the password, only what failed (e.g. "bad decrypt", "no certificate").
            culprit = self._failing_tls_setting()
            raise KafkaSecurityError(
                f"{culprit}: cannot load ({type(exc).__name__}: {_reason(exc)})"
            ) from None
        context.check_hostname = self.check_hostname
        return context

    def _failing_tls_setting(self) -> str:
        try:
            ssl.create_default_context(cafile=str(self.cafile) if self.cafile else None)
        except (ssl.SSLError, OSError):
            return f"{_var('ssl_cafile')} (not a PEM CA bundle?)"
        password = (
            _var("ssl_key_password_file") if self.key_password_file else _var("ssl_key_password")
        )
        return (
            f"{_var('ssl_certfile')} / {_var('ssl_keyfile')} / {password} "
            "(certificate and key do not match, or wrong key password?)"
        )

    def _key_password(self) -> str | None:
        if self.key_password is not None:
            return self.key_password.get_secret_value()
        if self.key_password_file is not None:
            return read_secret_file(self.key_password_file)
        return None

    def _sasl_password(self) -> str:
        if self.sasl_password_file is not None:
            return read_secret_file(self.sasl_password_file)
        return self.sasl_password.get_secret_value() if self.sasl_password else ""

    def client_security_options(self) -> dict[str, Any]:
        """aiokafka keyword arguments (security_protocol, ssl_context, sasl_*).

        The result holds the SASL password: pass it straight to a client, never log it.
        """
        problems = self.problems()
        if problems:
            raise KafkaSecurityError("; ".join(problems))
        options: dict[str, Any] = {"security_protocol": self.protocol}
        if self.uses_tls:
            options["ssl_context"] = self.ssl_context()
        if self.uses_sasl:
            options["sasl_mechanism"] = self.sasl_mechanism
            options["sasl_plain_username"] = self.sasl_username
            options["sasl_plain_password"] = self._sasl_password()
        return options


def _check_readable(name: str, path: Path, out: list[str]) -> bool:
    if not path.is_file():
        out.append(f"{_var(name)}: no such file {path}")
        return False
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        out.append(f"{_var(name)}: cannot read {path} ({exc.strerror})")
        return False
    return True


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return type(exc).__name__
