#!/usr/bin/env python3
"""A warm pool of sandboxes spread over three nodes, claimed with pop_spread.

Install the binding first (`pip install .` at the repo root), then run
`python3 examples/python/warm_pool.py`.
"""

import berth

POOL = "default/warm-pool"

with berth.Engine() as engine:
    # Six warm sandboxes: node-a holds three, node-b two, node-c one; one of
    # node-b's is still booting (not ready).
    engine.add_batch(
        POOL,
        [
            ("default", "sb-1", "node-b", True),
            ("default", "sb-2", "node-a", True),
            ("default", "sb-3", "node-a", True),
            ("default", "sb-4", "node-c", True),
            ("default", "sb-5", "node-b", False),
            ("default", "sb-6", "node-a", True),
        ],
    )
    print("pool:", engine.stats(POOL))

    # pop_spread hands out a ready key from the node holding the most keys,
    # so the nodes drain evenly.
    claimed = engine.pop_spread(POOL)
    assert claimed is not None
    print(f"claimed {claimed.name} on {claimed.node} (age {claimed.seq})")

    # The claim could not be used after all: put it back at its old age.
    restored = engine.put_back(POOL, claimed)
    print(f"put back {claimed.name}: {restored}")

    # A readiness change for a sandbox that may have been claimed meanwhile:
    # update() never brings a claimed key back.
    engine.update(POOL, "default", "sb-5", "node-b", True)

    order = []
    while (key := engine.pop_spread(POOL)) is not None:
        order.append(f"{key.name}@{key.node}")
    print("claim order:", ", ".join(order))
    print("pool:", engine.stats(POOL))
    print("per node:", engine.node_stats(POOL))
