"""SMPP 3.4 SMS adapter: a small codec of our own and one bound transceiver session.

Why not a library: the maintained asyncio candidates either pull in their own logging/queue
frameworks or lack typed PDUs; the subset an ESME needs is a few hundred lines, tested against
the spec layouts and a local SMSC (tests/fakes/smpp.py).
"""

from __future__ import annotations

from service.channels.smpp.session import SmppConfig, SmppSender

__all__ = ["SmppConfig", "SmppSender"]
