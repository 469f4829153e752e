"""Topic creation against a real broker."""

from tests.fixtures.broker import base_settings
from worker.topics import create_topics, describe_topics


async def test_create_topics_twice_is_idempotent(kafka_bootstrap):
    """The second run reports every topic as existing and raises nothing."""
    settings = base_settings(kafka_bootstrap, pooul_topic_partitions=3)
    first = await create_topics(settings)
    second = await create_topics(settings)
    assert set(first.values()) == {"created"}
    assert set(second.values()) == {"exists"}
    assert set(first) == set(settings.topics().values())


async def test_describe_shows_partitions_and_offsets(settings):
    """Every topic exists with the configured partition count and empty end offsets."""
    infos = {info.name: info for info in await describe_topics(settings)}
    assert set(infos) == set(settings.topics().values())
    assert all(info.partitions == 4 and info.records == 0 for info in infos.values())


async def test_partition_mismatch_is_refused(kafka_bootstrap):
    """An existing topic with another partition count fails loudly (co-partitioning)."""
    settings = base_settings(kafka_bootstrap, pooul_topic_partitions=2)
    await create_topics(settings)
    wider = settings.model_copy(update={"pooul_topic_partitions": 3})
    try:
        await create_topics(wider)
    except RuntimeError as exc:
        assert "co-partitioned" in str(exc)
    else:
        raise AssertionError("mismatched partitions were accepted")


def test_replicated_topics_require_two_in_sync_copies_for_acks_all() -> None:
    """With three replicas or more every topic gets min.insync.replicas = 2, so an acks=all
    write (the ingress's `success`) is on two brokers and one broker may be down; with fewer
    (two would stop writes whenever one broker is down; the local broker has one) nothing is
    set; changelogs stay compacted."""
    from worker.settings import Settings
    from worker.topics import topic_specs

    for replicas, expected in ((5, "2"), (3, "2"), (2, None), (1, None)):
        specs = topic_specs(Settings(pooul_topic_replication_factor=replicas))
        assert {s.configs.get("min.insync.replicas") for s in specs} == {expected}
        compacted = {s.name for s in specs if s.configs.get("cleanup.policy") == "compact"}
        assert compacted == {"pooul.trade-state.v1", "pooul.order-state.v1"}
