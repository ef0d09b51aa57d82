"""The publisher's partitioner: Kafka's murmur2 read four bytes at a time, the partition aiokafka's
(and Java's) default partitioner gives a keyed record."""

from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as aiokafka_murmur2
from hypothesis import given
from hypothesis import strategies as st

from streams.producer import keyed_partition, murmur2


@given(st.binary(max_size=80))
def test_murmur2_is_aiokafkas(key: bytes) -> None:
    assert murmur2(key) == aiokafka_murmur2(key)


@given(st.binary(min_size=1, max_size=40), st.integers(1, 64))
def test_a_keyed_record_goes_to_the_partition_aiokafkas_partitioner_picks(
    key: bytes, count: int
) -> None:
    every = list(range(count))
    assert keyed_partition(key, set(every)) == DefaultPartitioner()(key, every, every)
