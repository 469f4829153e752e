"""Which partition a `trade_id` goes to: Kafka's default key partitioner, bit for bit.

    partition = partition_for(b"trade-id", {0, 1, 2, 3})

Every producer of trade-signals (the ingress, the orders worker through aiokafka's default
partitioner, a Java client) must put a `trade_id` on the same partition, because the trades
worker owns trades by partition. So this is Java's `Utils.murmur2` (checked against aiokafka's
implementation in the tests), modulo the partition count — it only reads the key four bytes at
a time, which makes it about twice as fast as aiokafka's byte-by-byte version.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from struct import Struct

__all__ = ["murmur2", "partition_for", "partition_in"]

_M = 0x5BD1E995
_SEED = 0x9747B28C
_MASK = 0xFFFFFFFF
_WORDS = [Struct(f"<{n}I") for n in range(64)]


def murmur2(data: bytes) -> int:
    """Java's `org.apache.kafka.common.utils.Utils.murmur2` over `data` (unsigned 32-bit)."""
    length = len(data)
    h = (_SEED ^ length) & _MASK
    words = length >> 2
    unpack = _WORDS[words] if words < len(_WORDS) else Struct(f"<{words}I")
    for k in unpack.unpack_from(data):
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    tail = length & 3
    if tail:
        base = length & ~3
        if tail == 3:
            h ^= data[base + 2] << 16
        if tail >= 2:
            h ^= data[base + 1] << 8
        h ^= data[base]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h


def partition_for(key: bytes, partitions: Collection[int]) -> int:
    """The partition Kafka's default partitioner picks for `key` among `partitions`."""
    return partition_in(key, sorted(partitions))


def partition_in(key: bytes, ordered: Sequence[int]) -> int:
    """`partition_for` with the partitions already sorted (the publisher caches them)."""
    return ordered[(murmur2(key) & 0x7FFFFFFF) % len(ordered)]
