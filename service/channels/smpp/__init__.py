"""SMPP 3.4 SMS adapter: a small codec of our own and one bound transceiver session.

Why not a library: the maintained asyncio candidates either pull in their own logging/queue
frameworks or lack typed PDUs; the subset an ESME needs is a few hundred lines, tested against
the spec layouts and a local SMSC (tests/fakes/smpp.py).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from service.channels.smpp.session import SmppConfig, SmppSender
from service.compliance.opt_out import OptOutMatcher
from service.config import Settings
from service.receipts.model import ReceiptSink

__all__ = ["SmppConfig", "SmppSender", "build_smpp_sender", "smpp_config_from_settings"]


def smpp_config_from_settings(settings: Settings) -> SmppConfig:
    s = settings
    return SmppConfig(
        host=s.smpp_host,
        port=s.smpp_port,
        system_id=s.smpp_system_id,
        password=s.smpp_password.get_secret_value(),
        system_type=s.smpp_system_type,
        source_addr=s.smpp_source_addr,
        source_addr_ton=s.smpp_source_addr_ton,
        source_addr_npi=s.smpp_source_addr_npi,
        dest_addr_ton=s.smpp_dest_addr_ton,
        dest_addr_npi=s.smpp_dest_addr_npi,
        tls=s.smpp_tls,
        window=s.smpp_window,
        enquire_link_s=s.smpp_enquire_link_s,
        response_timeout_s=s.smpp_response_timeout_s,
        bind_wait_s=s.smpp_bind_wait_s,
        reconnect_min_s=s.smpp_reconnect_min_s,
        reconnect_max_s=s.smpp_reconnect_max_s,
        throttle_pause_s=s.smpp_throttle_pause_s,
        long_message=s.smpp_long_message,
        registered_delivery=s.smpp_registered_delivery,
        opt_out=OptOutMatcher.with_extra(s.opt_out_keywords),
        country_code=s.smpp_country_code,
    )


def build_smpp_sender(
    settings: Settings,
    sink: ReceiptSink,
    *,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> SmppSender:
    """An unstarted session; the caller awaits `start()` at boot and `aclose()` at shutdown."""
    return SmppSender(smpp_config_from_settings(settings), sink, clock=clock)
