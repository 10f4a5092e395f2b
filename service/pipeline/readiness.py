"""What "ready" means for the Kafka side of a replica, from aiokafka's public API.

- Producer: it has a live connection to at least one broker of the cluster it knows
  (`AIOKafkaProducer.client`, `AIOKafkaClient.ready(node_id)`: reuses the open connection or
  opens one). A producer whose brokers all went away is not ready: results could not be
  published.
- Consumer: it has joined the group at least once since start, i.e. the group coordinator ran
  `on_partitions_assigned` for it (with an empty assignment too: a replica beyond the number of
  partitions is a healthy standby, and a rollout with `maxUnavailable: 0` must be able to
  complete). Later rebalances do not flip it back: a member stuck in a rebalance shows up in
  liveness (the poll loop stops ticking), and marking every replica unready during a routine
  rebalance would take the receipt webhooks off the Service at the same moment.
"""

from __future__ import annotations

from typing import Any

from aiokafka import AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition

__all__ = ["GroupMembership", "KafkaNotReadyError", "producer_connected"]


class KafkaNotReadyError(ConnectionError):
    """A Kafka client is not (yet) in a state to do its work."""


class GroupMembership(ConsumerRebalanceListener):  # type: ignore[misc]
    """A rebalance listener that remembers whether the consumer has joined its group, and
    hands every callback on to the listener that does the work (the engine's)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.joins = 0

    @property
    def joined(self) -> bool:
        return self.joins > 0

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._inner.on_partitions_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self._inner.on_partitions_assigned(assigned)
        self.joins += 1

    async def check(self) -> None:
        """Readiness check: raise until the first join completed."""
        if not self.joined:
            raise KafkaNotReadyError("the consumer has not joined its group yet")


async def producer_connected(producer: AIOKafkaProducer) -> None:
    """Readiness check: raise unless the producer can reach a broker now."""
    client = producer.client
    brokers = sorted(b.nodeId for b in client.cluster.brokers())
    if not brokers:
        raise KafkaNotReadyError("no Kafka broker known")
    for node_id in brokers:
        if await client.ready(node_id):
            return
    raise KafkaNotReadyError("no Kafka broker reachable")
