"""A TLS check before the Kafka clients start, so a certificate problem is named, not hidden.

aiokafka reports a failed TLS handshake as "Unable to bootstrap from ..." and logs the cause at
most once; `check_tls` opens one TLS connection to each bootstrap server and turns a refused
certificate into a `KafkaSecurityError` that says what failed and which setting to look at.
An unreachable server is not a configuration error and is left to the client's retries.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl

from service.config import Settings
from service.kafka_security import KafkaSecurityError

__all__ = ["check_tls"]

# OpenSSL verify codes (X509_V_ERR_*) worth a specific hint.
_HOSTNAME_MISMATCH = 62
_EXPIRED = 10
_NOT_YET_VALID = 9


async def check_tls(settings: Settings, connect_timeout_s: float = 10.0) -> None:
    """Raise `KafkaSecurityError` if a bootstrap server's certificate is refused."""
    security = settings.kafka_security
    if not security.uses_tls:
        return
    context = security.ssl_context()
    for server in settings.kafka_bootstrap_servers.split(","):
        server = server.strip()
        host, _, port = server.rpartition(":")
        host = host.strip("[]")
        try:
            async with asyncio.timeout(connect_timeout_s):
                _, writer = await asyncio.open_connection(host, int(port))
        except (OSError, TimeoutError):
            continue  # unreachable: availability, not configuration
        try:
            async with asyncio.timeout(connect_timeout_s):
                await writer.start_tls(context, server_hostname=host)
        except ssl.SSLCertVerificationError as exc:
            raise KafkaSecurityError(_explain(server, exc)) from None
        except (ssl.SSLError, OSError, TimeoutError) as exc:
            raise KafkaSecurityError(
                f"TLS handshake with Kafka broker {server} failed ({_reason(exc)}); does that "
                "port speak TLS? (NOTIFIER_KAFKA_SECURITY_PROTOCOL, "
                "NOTIFIER_KAFKA_BOOTSTRAP_SERVERS)"
            ) from None
        finally:
            # abort(), not close(): after a failed handshake a graceful TLS close can wait
            # forever for a peer that never speaks TLS.
            writer.transport.abort()
            with contextlib.suppress(OSError, ssl.SSLError, TimeoutError):
                async with asyncio.timeout(1.0):
                    await writer.wait_closed()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason)
    if isinstance(exc, TimeoutError):
        return "no TLS answer"
    return type(exc).__name__


def _explain(server: str, exc: ssl.SSLCertVerificationError) -> str:
    head = f"TLS to Kafka broker {server}: certificate refused ({exc.verify_message})"
    if exc.verify_code == _HOSTNAME_MISMATCH:
        return (
            f"{head}: it does not name the host connected to; fix "
            "NOTIFIER_KAFKA_BOOTSTRAP_SERVERS or the broker certificate "
            "(NOTIFIER_KAFKA_SSL_CHECK_HOSTNAME=false only as a last resort)"
        )
    if exc.verify_code in (_EXPIRED, _NOT_YET_VALID):
        return f"{head}: check the broker certificate's validity and this machine's clock"
    return (
        f"{head}: it is not signed by a CA in NOTIFIER_KAFKA_SSL_CAFILE "
        "(unset: the system trust store)"
    )
