"""The ingress's partitioner is Kafka's default one, bit for bit (trade_id → same partition)."""

from __future__ import annotations

import os
import random

from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as reference_murmur2

from worker.ingress.partitioner import murmur2, partition_for


def test_murmur2_matches_the_java_port_for_every_length():
    """For keys of 0 to 300 bytes (all tail lengths, long keys) the hash equals aiokafka's port
    of Java's Utils.murmur2."""
    rng = random.Random(7)
    for length in range(301):
        for _ in range(10):
            data = bytes(rng.randrange(256) for _ in range(length))
            assert murmur2(data) == reference_murmur2(data) & 0xFFFFFFFF, data


def test_partition_choice_matches_the_default_partitioner():
    """For realistic trade ids and several partition counts the chosen partition is the one
    aiokafka's (and Java's) default partitioner picks."""
    default = DefaultPartitioner()
    keys = [f"T{os.urandom(8).hex()}".encode() for _ in range(500)] + [b"20260101000012345678"]
    for count in (1, 3, 4, 8, 12, 64):
        partitions = set(range(count))
        for key in keys:
            expected = default(key, list(range(count)), list(range(count)))
            assert partition_for(key, partitions) == expected
