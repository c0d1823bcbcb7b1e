"""Random operation sequences checked against a plain-Python model of berth.h."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass

import pytest

import berth

POOL = "model/pool"


@dataclass
class ModelKey:
    node: str
    ready: bool
    age: int


class Model:
    """The pool as berth.h describes it, written for clarity, not speed."""

    def __init__(self) -> None:
        self.keys: dict[tuple[str, str], ModelKey] = {}
        self.next_age = 0
        # token -> (id, key at hand-out); only the latest hand-out of an id.
        self.records: dict[int, tuple[tuple[str, str], ModelKey]] = {}

    def add(self, kid: tuple[str, str], node: str, ready: bool) -> bool:
        self._forget(kid)
        if kid in self.keys:
            self.keys[kid].node, self.keys[kid].ready = node, ready
            return False
        self.keys[kid] = ModelKey(node, ready, self.next_age)
        self.next_age += 1
        return True

    def update(self, kid: tuple[str, str], node: str, ready: bool) -> bool:
        if kid not in self.keys:
            return False
        self.keys[kid].node, self.keys[kid].ready = node, ready
        return True

    def remove(self, kid: tuple[str, str]) -> bool:
        return self.keys.pop(kid, None) is not None

    def _forget(self, kid: tuple[str, str]) -> None:
        for tok in [t for t, (i, _) in self.records.items() if i == kid]:
            del self.records[tok]

    def pick_fifo(self) -> tuple[str, str] | None:
        return min(self.keys, key=lambda i: self.keys[i].age, default=None)

    def pick_spread(self) -> tuple[str, str] | None:
        if not self.keys:
            return None
        ready = [i for i, k in self.keys.items() if k.ready]
        cands = ready or list(self.keys)
        counts = Counter(k.node for k in self.keys.values() if k.node)
        oldest: dict[str, tuple[str, str]] = {}
        for i in cands:
            node = self.keys[i].node
            if node and (node not in oldest or self.keys[i].age < self.keys[oldest[node]].age):
                oldest[node] = i
        if not oldest:
            return min(cands, key=lambda i: self.keys[i].age)
        best = max(oldest, key=lambda n: (counts[n], -self.keys[oldest[n]].age))
        return oldest[best]

    def hand_out(self, kid: tuple[str, str], token: int) -> ModelKey:
        k = self.keys.pop(kid)
        self.records[token] = (kid, ModelKey(k.node, k.ready, k.age))
        return k

    def put_back(self, kid: tuple[str, str], token: int) -> bool:
        rec = self.records.get(token)
        if rec is None or rec[0] != kid or kid in self.keys:
            return False
        del self.records[token]
        self.keys[kid] = ModelKey(rec[1].node, rec[1].ready, rec[1].age)
        return True

    def oldest_first(self) -> list[tuple[str, str, str, bool]]:
        return [
            (i[0], i[1], k.node, k.ready)
            for i, k in sorted(self.keys.items(), key=lambda ik: ik[1].age)
        ]


@pytest.mark.parametrize("seed", range(12))
def test_engine_matches_the_model_on_random_operations(seed):
    rng = random.Random(seed)
    n_names = rng.choice([5, 20, 60])
    nodes = [""] + [f"node-{i}" for i in range(rng.choice([1, 3, 8]))]
    p_ready = rng.choice([0.2, 0.6, 1.0])
    model = Model()
    handed_out: list[berth.PoolKey] = []

    def rand_key() -> tuple[str, str]:
        return (rng.choice(["ns-a", "ns-b"]), f"k{rng.randrange(n_names)}")

    with berth.Engine() as e:
        e.add(POOL, "ns-a", "seed")
        model.add(("ns-a", "seed"), "", True)
        for step in range(600):
            op = rng.random()
            where = f"seed {seed} step {step}"
            if op < 0.35:
                kid, node, ready = rand_key(), rng.choice(nodes), rng.random() < p_ready
                assert e.add(POOL, *kid, node, ready) == model.add(kid, node, ready), where
            elif op < 0.42:
                kid, node, ready = rand_key(), rng.choice(nodes), rng.random() < p_ready
                assert e.update(POOL, *kid, node, ready) == model.update(kid, node, ready), where
            elif op < 0.47:
                batch = [(*rand_key(), rng.choice(nodes), rng.random() < p_ready) for _ in range(rng.randrange(6))]
                new = sum(model.add((b[0], b[1]), b[2], b[3]) for b in batch)
                assert e.add_batch(POOL, batch) == new, where
            elif op < 0.55:
                kid = rand_key()
                assert e.remove(POOL, *kid) == model.remove(kid), where
            elif op < 0.85:
                spread = op < 0.75
                want = model.pick_spread() if spread else model.pick_fifo()
                got = e.pop_spread(POOL) if spread else e.pop_fifo(POOL)
                if want is None:
                    assert got is None, where
                    continue
                assert got is not None, where
                assert (got.namespace, got.name) == want, where
                k = model.hand_out(want, got.token)
                assert (got.node, got.ready) == (k.node, k.ready), where
                handed_out.append(got)
            elif handed_out:
                key = rng.choice(handed_out[-10:])
                assert e.put_back(POOL, key) == model.put_back((key.namespace, key.name), key.token), where
            if step % 50 == 0:
                got_snap = [(k.namespace, k.name, k.node, k.ready) for k in e.snapshot(POOL)]
                assert got_snap == model.oldest_first(), where
                s = e.stats(POOL)
                assert s.keys == len(model.keys), where
                assert s.ready_keys == sum(k.ready for k in model.keys.values()), where
                assert s.scheduled_keys == sum(bool(k.node) for k in model.keys.values()), where
        assert [(k.namespace, k.name, k.node, k.ready) for k in e.snapshot(POOL)] == model.oldest_first()


def test_pop_spread_with_all_keys_ready_matches_the_reference_scan():
    # berth.h: with every key ready, pop_spread is the reference controller's
    # scan: count keys per node, then take the first key, oldest first, on a
    # node with a strictly larger count.
    rng = random.Random(7)
    with berth.Engine() as e:
        order: list[tuple[str, str]] = []  # (name, node), oldest first
        for i in range(400):
            node = f"node-{rng.randrange(12)}"
            e.add(POOL, "ns", f"k{i}", node, True)
            order.append((f"k{i}", node))
        for _ in range(400):
            counts = Counter(node for _, node in order)
            best, best_count = None, -1
            for name, node in order:
                if counts[node] > best_count:
                    best, best_count = name, counts[node]
            got = e.pop_spread(POOL)
            assert got is not None and got.name == best
            order = [(n, nd) for n, nd in order if n != best]
            if rng.random() < 0.3:  # churn: re-add the claimed key as the youngest
                e.add(POOL, "ns", got.name, got.node, True)
                order.append((got.name, got.node))
