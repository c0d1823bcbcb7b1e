#!/usr/bin/env python3
"""An object cache fed like an informer: a relist, then watch events, then
reads by label selector.

Install the binding first (`pip install .` at the repo root), then run
`python3 examples/python/cache.py`.
"""

import json

import berth


def pod(name: str, rv: int, app: str, phase: str) -> berth.Object:
    return berth.Object("default", name, rv, {"app": app, "tier": "backend"}, json.dumps({"phase": phase}).encode())


with berth.Cache() as cache, berth.Selector("app in (api, worker),tier=backend") as backends:
    # Before the first relist the cache refuses to answer: go to the API server.
    try:
        cache.list("default")
    except berth.NotSyncedError:
        print("not synced yet")

    # The relist (LIST at resourceVersion 100) syncs the cache.
    cache.replace([pod("api-1", 90, "api", "Running"), pod("api-2", 95, "api", "Pending"), pod("db-1", 97, "db", "Running")], 100)

    # Watch events after the list, applied in one call, in order.
    applied = cache.apply(
        [
            berth.Event(berth.EventType.MODIFIED, "default", "api-2", 101, {"app": "api", "tier": "backend"}, b'{"phase": "Running"}'),
            berth.Event(berth.EventType.ADDED, "default", "worker-1", 102, {"app": "worker", "tier": "backend"}, b'{"phase": "Pending"}'),
            berth.Event(berth.EventType.DELETED, "default", "api-1", 103),
            # A late, stale event: older than the delete, so it is ignored.
            berth.Event(berth.EventType.MODIFIED, "default", "api-1", 99, {"app": "api", "tier": "backend"}),
        ]
    )
    print(f"applied {applied} of 4 events")

    # Our own write, after the API server accepted it at resourceVersion 104.
    cache.upsert("default", "worker-1", 104, {"app": "worker", "tier": "backend"}, b'{"phase": "Running"}')

    objects = cache.list("default", backends)
    print(f"{len(objects)} objects match {backends} at resourceVersion {objects.resource_version}:")
    for obj in objects:
        # obj is a reference to the cached object (nothing was copied);
        # payload is bytes, as json.loads takes it.
        print(f"  {obj.namespace}/{obj.name} rv={obj.resource_version} labels={obj.labels} "
              f"payload={json.loads(obj.payload)}")
    print(cache.stats())
