"""Which offset of a partition is safe to commit while events finish out of order.

Kafka's committed offset means "everything below this is done". Events of one partition finish
in any order (different borrowers run in parallel), so the committable position is the lowest
offset still unfinished, or one past the last offset seen when nothing is pending.
"""

from __future__ import annotations

from collections import deque

__all__ = ["OffsetTracker"]


class OffsetTracker:
    """Offsets of one partition, in fetch order, and which of them are finished."""

    __slots__ = ("_committed", "_done", "_pending", "_started_at", "closed", "running")

    def __init__(self, committed: int | None = None) -> None:
        self._pending: deque[int] = deque()
        self._done: set[int] = set()
        self._started_at: dict[int, float] = {}
        # The position last handed to commit (None before the first commit).
        self._committed = committed
        # Set when the partition is revoked: records not yet started are left to the new owner.
        self.closed = False
        # Records of this partition being processed right now.
        self.running = 0

    def __len__(self) -> int:
        """Offsets fetched and not yet below the committable position."""
        return len(self._pending)

    def add(self, offset: int, started_at: float = 0.0) -> None:
        if self._pending and offset <= self._pending[-1]:
            # A re-fetch after a seek or rebalance: already tracked, nothing new.
            return
        self._pending.append(offset)
        self._started_at[offset] = started_at

    def finish(self, offset: int) -> None:
        if offset in self._started_at:
            self._done.add(offset)
            self._advance()

    def _advance(self) -> None:
        pending, done = self._pending, self._done
        # Keep the last finished offset so the committable position survives an empty deque.
        while len(pending) > 1 and pending[0] in done:
            offset = pending.popleft()
            done.discard(offset)
            self._started_at.pop(offset, None)

    def committable(self) -> int | None:
        """The offset to commit (next to read), or None if nothing new is finished."""
        if not self._pending:
            return None
        head = self._pending[0]
        position = head + 1 if head in self._done else head
        if self._committed is not None and position <= self._committed:
            return None
        return position

    def mark_committed(self, position: int) -> None:
        self._committed = position

    def last_committed(self) -> int | None:
        return self._committed

    def unfinished(self) -> int:
        return len(self._pending) - len(self._done)

    def oldest_unfinished_start(self) -> float | None:
        """When the oldest unfinished offset was fetched (monotonic seconds), or None."""
        for offset in self._pending:
            if offset not in self._done:
                return self._started_at[offset]
        return None
