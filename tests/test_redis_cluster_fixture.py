"""The Redis Cluster the fleet tests run on: three masters on loopback, every slot served."""

from __future__ import annotations

import redis
from redis.cluster import RedisCluster as ClusterClient

from tests.conftest import RedisCluster


def test_cluster_has_three_masters_sharing_the_slots(redis_cluster: RedisCluster) -> None:
    node = redis_cluster.nodes[0]
    client = ClusterClient(host="127.0.0.1", port=node.port)
    try:
        masters = client.get_primaries()
        assert len(masters) == RedisCluster.MASTERS
        # keys with different hash tags land on different masters
        owners = {client.get_node_from_key(f"{{probe:{i}}}").port for i in range(64)}
        assert owners == {m.port for m in masters}
        client.set("{probe:1}k", "v")
        assert client.get("{probe:1}k") == b"v"
    finally:
        client.close()
    for n in redis_cluster.nodes:
        with redis.Redis(host="127.0.0.1", port=n.port) as one:
            assert one.cluster("info")["cluster_state"] == "ok"
