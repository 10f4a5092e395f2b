"""What a Kafka consumer of this service needs installed before it is built.

The clients themselves are built from the settings in service/wiring/kafka.py.
"""

from __future__ import annotations

from aiokafka import codec

from service.errors import ConfigError

__all__ = ["MissingCodecError", "check_codecs"]


class MissingCodecError(ConfigError):
    """A Kafka codec the service must read is not installed (an image built without cramjam).

    A ConfigError so that `run` reports it as the start-up error it is (one line, exit 2).
    """

    fix = "install the service with its dependencies (aiokafka[lz4,snappy,zstd], i.e. cramjam)"


def check_codecs() -> None:
    """Fail at start, naming the library, rather than on the first batch of that codec.

    Upstream producers choose their codec (librdkafka's `compression.type`, kafka-python's
    `compression_type`); a consumer lacking one raises `UnsupportedCodecError` out of `getmany`
    on every fetch of that partition, so the whole service exits and every restart with it.
    """
    missing = [
        name
        for name, present in (
            ("snappy", codec.has_snappy()),
            ("lz4", codec.has_lz4()),
            ("zstd", codec.has_zstd()),
        )
        if not present
    ]
    if missing:
        raise MissingCodecError(
            f"Kafka codecs {', '.join(missing)} are not available: install the service with its "
            "dependencies (aiokafka[lz4,snappy,zstd], i.e. cramjam)"
        )
