"""Warm-pool semantics of berth.Engine, as berth.h states them."""

from __future__ import annotations

import gc
import re

import pytest
from conftest import POOL, drain, names, rss_mib

import berth


def add_all(engine: berth.Engine, spec: list[tuple[str, str, bool]], pool: str = POOL) -> None:
    """Adds (name, node, ready) keys in order, so the first is the oldest."""
    for name, node, ready in spec:
        assert engine.add(pool, "ns", name, node, ready) is True


# --------------------------------------------------------------------------
# add / remove / remove_pool
# --------------------------------------------------------------------------


def test_add_returns_true_when_inserted_and_false_when_updated(engine):
    assert engine.add(POOL, "ns", "a", "n1") is True
    assert engine.add(POOL, "ns", "a", "n2", False) is False
    assert engine.add(POOL, "other-ns", "a", "n1") is True  # (namespace, name) is the key
    assert engine.stats(POOL).keys == 2


def test_add_update_keeps_age_and_takes_new_node_and_ready(engine):
    add_all(engine, [("a", "n1", True), ("b", "n1", True), ("c", "n1", True)])
    seq_before = {k.name: k.seq for k in engine.snapshot(POOL)}
    assert engine.add(POOL, "ns", "a", "n9", False) is False
    snap = engine.snapshot(POOL)
    assert names(snap) == ["a", "b", "c"]
    assert snap[0].seq == seq_before["a"]
    assert (snap[0].node, snap[0].ready) == ("n9", False)
    assert names([engine.pop_fifo(POOL)]) == ["a"]


def test_add_defaults_to_unscheduled_and_ready(engine):
    engine.add(POOL, "ns", "a")
    (k,) = engine.snapshot(POOL)
    assert (k.namespace, k.name, k.node, k.ready) == ("ns", "a", "", True)


def test_add_accepts_keyword_arguments(engine):
    assert engine.add(pool=POOL, namespace="ns", name="a", node="n1", ready=False)
    assert engine.snapshot(POOL)[0].ready is False


def test_add_creates_the_pool(engine):
    with pytest.raises(berth.NotFoundError):
        engine.stats(POOL)
    engine.add(POOL, "", "a")
    assert engine.stats(POOL).keys == 1


def test_empty_namespace_is_a_namespace_of_its_own(engine):
    assert engine.add(POOL, "", "a")
    assert engine.add(POOL, "ns", "a")
    assert engine.remove(POOL, "", "a") is True
    assert [(k.namespace, k.name) for k in engine.snapshot(POOL)] == [("ns", "a")]


def test_update_changes_node_and_ready_of_a_present_key_and_keeps_age(engine):
    add_all(engine, [("a", "n1", True), ("b", "n1", True)])
    assert engine.update(POOL, "ns", "a", "n2", False) is True
    snap = engine.snapshot(POOL)
    assert names(snap) == ["a", "b"]
    assert (snap[0].node, snap[0].ready) == ("n2", False)


def test_update_of_an_absent_key_or_pool_does_not_insert(engine):
    engine.add(POOL, "ns", "a", "n1")
    assert engine.update(POOL, "ns", "zzz", "n1", True) is False
    assert engine.update("no/such-pool", "ns", "a", "n1", True) is False
    assert names(engine.snapshot(POOL)) == ["a"]
    with pytest.raises(berth.NotFoundError):
        engine.stats("no/such-pool")


def test_update_of_a_handed_out_key_does_not_bring_it_back(engine):
    add_all(engine, [("a", "n1", True), ("b", "n1", True)])
    a = engine.pop_fifo(POOL)
    assert engine.update(POOL, "ns", "a", "n1", False) is False
    assert names(engine.snapshot(POOL)) == ["b"]
    assert engine.put_back(POOL, a) is True  # the update did not make it stale
    assert engine.snapshot(POOL)[0].ready is True


def test_update_defaults_to_unscheduled_and_ready(engine):
    engine.add(POOL, "ns", "a", "n1", False)
    assert engine.update(POOL, "ns", "a")
    (k,) = engine.snapshot(POOL)
    assert (k.node, k.ready) == ("", True)


def test_remove_present_key_returns_true_and_drops_it(engine):
    add_all(engine, [("a", "n1", True), ("b", "n1", True)])
    assert engine.remove(POOL, "ns", "a") is True
    assert names(engine.snapshot(POOL)) == ["b"]


def test_remove_absent_key_or_pool_is_not_an_error(engine):
    engine.add(POOL, "ns", "a")
    assert engine.remove(POOL, "ns", "nope") is False
    assert engine.remove(POOL, "other", "a") is False
    assert engine.remove("no/such-pool", "ns", "a") is False
    assert engine.stats(POOL).keys == 1


def test_remove_pool_drops_every_key_and_reports_existence(engine):
    add_all(engine, [("a", "n1", True), ("b", "n2", True)])
    engine.pop_fifo(POOL)
    assert engine.remove_pool(POOL) is True
    assert engine.remove_pool(POOL) is False
    with pytest.raises(berth.NotFoundError):
        engine.stats(POOL)
    with pytest.raises(berth.NotFoundError):
        engine.pop_spread(POOL)


def test_pools_lists_every_pool_sorted_until_it_is_removed(engine):
    assert engine.pools() == []
    for pool in ("team-b/wp", "team-a/wp", "équipe/gpu"):
        engine.add(pool, "ns", "sb-1", "node-a", True)
    assert engine.pools() == ["team-a/wp", "team-b/wp", "équipe/gpu"]
    engine.pop_fifo("team-a/wp")  # empty, still a pool
    assert engine.remove_pool("team-b/wp")
    assert engine.pools() == ["team-a/wp", "équipe/gpu"]


def test_add_after_remove_pool_starts_an_empty_pool(engine):
    add_all(engine, [("a", "n1", True), ("b", "n2", True)])
    engine.remove_pool(POOL)
    assert engine.add(POOL, "ns", "c") is True
    assert names(engine.snapshot(POOL)) == ["c"]
    assert engine.stats(POOL).put_back_records == 0


def test_remove_pool_gives_its_memory_back_to_the_os(engine):
    # The current resident set, not the peak: after the removal it must be
    # back near where it was before the fill (berth.h, "Memory").
    def fill(n: int) -> None:
        for start in range(0, n, 10_000):  # in chunks: Python's own memory stays flat
            keys = [("ns", f"key-{i:08d}", f"node-{i % 50}", True) for i in range(start, start + 10_000)]
            engine.add_batch(POOL, keys)

    fill(20_000)  # once-per-process setup (Berth's arenas, Python's caches) before the baseline
    engine.remove_pool(POOL)
    gc.collect()
    before = rss_mib()
    fill(300_000)
    grown = rss_mib() - before
    engine.remove_pool(POOL)
    gc.collect()
    left = rss_mib() - before
    assert grown > 30, grown  # the pool took memory worth measuring
    assert left < grown / 10, (before, grown, left)


def test_pools_are_independent(engine):
    engine.add("p1", "ns", "a", "n1")
    engine.add("p2", "ns", "a", "n2")
    engine.remove_pool("p1")
    assert [(k.name, k.node) for k in engine.snapshot("p2")] == [("a", "n2")]


def test_engines_share_nothing():
    with berth.Engine() as e1, berth.Engine() as e2:
        e1.add(POOL, "ns", "a")
        with pytest.raises(berth.NotFoundError):
            e2.stats(POOL)


# --------------------------------------------------------------------------
# pop_fifo
# --------------------------------------------------------------------------


def test_pop_fifo_hands_out_oldest_first_ready_or_not(engine):
    add_all(engine, [("a", "n1", False), ("b", "", True), ("c", "n2", True), ("d", "n2", False)])
    assert names(drain(engine, spread=False)) == ["a", "b", "c", "d"]


def test_pop_returns_none_on_an_empty_pool(engine):
    engine.add(POOL, "ns", "a")
    assert engine.pop_fifo(POOL) is not None
    assert engine.pop_fifo(POOL) is None
    assert engine.pop_spread(POOL) is None


def test_pop_removes_the_key_and_returns_its_fields(engine):
    engine.add(POOL, "ns", "a", "node-1", False)
    k = engine.pop_fifo(POOL)
    assert isinstance(k, berth.PoolKey)
    assert (k.namespace, k.name, k.node, k.ready) == ("ns", "a", "node-1", False)
    assert isinstance(k.seq, int) and isinstance(k.token, int)
    assert engine.stats(POOL).keys == 0


def test_pool_key_is_immutable(engine):
    engine.add(POOL, "ns", "a", "n1")
    k = engine.pop_spread(POOL)
    with pytest.raises(AttributeError):
        k.name = "b"  # type: ignore[misc]
    assert k == berth.PoolKey("ns", "a", "n1", True, k.seq, k.token)
    assert hash(k) == hash(tuple(k))


def test_seq_grows_with_age_and_is_never_reused(engine):
    add_all(engine, [("a", "n1", True), ("b", "n1", True)])
    seqs = [k.seq for k in engine.snapshot(POOL)]
    assert seqs[0] < seqs[1]
    a = engine.pop_fifo(POOL)
    engine.add(POOL, "ns", "a", "n1")  # re-enters as the youngest, with a new seq
    snap = engine.snapshot(POOL)
    assert names(snap) == ["b", "a"]
    assert snap[1].seq > max(seqs) and snap[1].seq != a.seq


# --------------------------------------------------------------------------
# pop_spread (NodeSpread)
# --------------------------------------------------------------------------


def test_pop_spread_picks_node_with_most_keys(engine):
    add_all(engine, [("a", "n1", True), ("b", "n2", True), ("c", "n2", True)])
    assert engine.pop_spread(POOL).name == "b"


def test_pop_spread_hands_out_oldest_key_of_chosen_node(engine):
    add_all(engine, [("a", "n1", True), ("b", "n2", True), ("c", "n2", True), ("d", "n2", True)])
    assert names([engine.pop_spread(POOL), engine.pop_spread(POOL)]) == ["b", "c"]


def test_pop_spread_tie_goes_to_node_with_oldest_candidate(engine):
    add_all(engine, [("a", "n2", True), ("b", "n1", True), ("c", "n1", True), ("d", "n2", True)])
    # n1 and n2 both hold 2 keys; n2's oldest (a) is older than n1's (b).
    assert engine.pop_spread(POOL).name == "a"
    # Now n1 holds 2 keys, n2 one.
    assert engine.pop_spread(POOL).name == "b"


def test_pop_spread_tie_is_decided_by_oldest_candidate_not_oldest_key(engine):
    # n1 holds the oldest key overall, but it is unready, so it is not a
    # candidate; n2's oldest candidate is older than n1's.
    add_all(engine, [("a", "n1", False), ("b", "n2", True), ("c", "n1", True), ("d", "n2", False)])
    assert engine.pop_spread(POOL).name == "b"


def test_pop_spread_ready_beats_unready(engine):
    add_all(engine, [("u1", "n1", False), ("u2", "n1", False), ("u3", "n1", False), ("r", "n2", True)])
    assert engine.pop_spread(POOL).name == "r"


def test_pop_spread_counts_unready_keys_toward_a_node(engine):
    # n2's two ready keys are older, but n1 holds four keys (one ready).
    add_all(
        engine,
        [
            ("r2a", "n2", True),
            ("r2b", "n2", True),
            ("u1a", "n1", False),
            ("u1b", "n1", False),
            ("u1c", "n1", False),
            ("r1", "n1", True),
        ],
    )
    assert engine.pop_spread(POOL).name == "r1"
    # n1 still holds three (unready) keys, but only n2 has ready ones.
    assert engine.pop_spread(POOL).name == "r2a"


def test_pop_spread_uses_unready_keys_when_none_is_ready(engine):
    add_all(engine, [("a", "n1", False), ("b", "n2", False), ("c", "n2", False)])
    assert names(drain(engine)) == ["b", "a", "c"]


def test_pop_spread_prefers_scheduled_candidates_over_unscheduled(engine):
    add_all(engine, [("free1", "", True), ("free2", "", True), ("s", "n1", True)])
    # Two unscheduled keys are older (and more numerous), but they have no node.
    assert engine.pop_spread(POOL).name == "s"
    # No scheduled candidate is left: the oldest candidate goes.
    assert names(drain(engine)) == ["free1", "free2"]


def test_pop_spread_unscheduled_ready_beats_scheduled_unready(engine):
    add_all(engine, [("u", "n1", False), ("u2", "n1", False), ("free", "", True)])
    assert engine.pop_spread(POOL).name == "free"


def test_pop_spread_unscheduled_keys_do_not_count_as_a_node(engine):
    add_all(engine, [("s1", "n1", True), ("f1", "", True), ("f2", "", True), ("s2", "n2", True), ("s3", "n2", True)])
    assert engine.pop_spread(POOL).name == "s2"


def test_pop_spread_follows_node_updates(engine):
    add_all(engine, [("a", "n1", True), ("b", "n2", True), ("c", "n2", True)])
    engine.add(POOL, "ns", "a", "n2")  # moves a to n2: n2 now holds three
    assert engine.pop_spread(POOL).name == "a"


def test_pop_spread_follows_ready_updates(engine):
    add_all(engine, [("a", "n1", True), ("b", "n2", False), ("c", "n2", False)])
    assert engine.add(POOL, "ns", "a", "n1", False) is False
    engine.add(POOL, "ns", "c", "n2", True)
    assert engine.pop_spread(POOL).name == "c"


# --------------------------------------------------------------------------
# put_back
# --------------------------------------------------------------------------


def test_put_back_restores_original_age(engine):
    add_all(engine, [("a", "n1", True), ("b", "n1", True), ("c", "n1", True)])
    a = engine.pop_fifo(POOL)
    assert engine.put_back(POOL, a) is True
    snap = engine.snapshot(POOL)
    assert names(snap) == ["a", "b", "c"]
    assert snap[0].seq == a.seq


def test_put_back_restores_node_and_ready_of_the_hand_out(engine):
    engine.add(POOL, "ns", "a", "n1", False)
    a = engine.pop_fifo(POOL)
    assert engine.put_back(POOL, a)
    (k,) = engine.snapshot(POOL)
    assert (k.node, k.ready) == ("n1", False)


def test_put_back_after_re_add_is_stale_and_the_re_add_wins(engine):
    add_all(engine, [("a", "n1", True), ("b", "n1", True)])
    a = engine.pop_fifo(POOL)
    assert engine.add(POOL, "ns", "a", "n2", False) is True
    assert engine.put_back(POOL, a) is False
    snap = engine.snapshot(POOL)
    assert names(snap) == ["b", "a"]
    assert (snap[1].node, snap[1].ready) == ("n2", False)


def test_put_back_is_stale_after_re_add_even_if_the_key_left_again(engine):
    add_all(engine, [("a", "n1", True), ("b", "n1", True)])
    a = engine.pop_fifo(POOL)
    engine.add(POOL, "ns", "a", "n1")
    engine.remove(POOL, "ns", "a")
    assert engine.put_back(POOL, a) is False
    assert names(engine.snapshot(POOL)) == ["b"]


def test_put_back_twice_is_stale_the_second_time(engine):
    engine.add(POOL, "ns", "a", "n1")
    a = engine.pop_spread(POOL)
    assert engine.put_back(POOL, a) is True
    assert engine.put_back(POOL, a) is False
    assert engine.stats(POOL).keys == 1


def test_put_back_with_another_keys_token_is_stale(engine):
    add_all(engine, [("a", "n1", True), ("b", "n1", True)])
    a = engine.pop_fifo(POOL)
    b = engine.pop_fifo(POOL)
    assert engine.put_back(POOL, a._replace(token=b.token)) is False
    assert engine.stats(POOL).keys == 0
    assert engine.put_back(POOL, b) is True


def test_put_back_after_the_window_is_stale(engine):
    window = berth.POOL_PUT_BACK_WINDOW
    engine.add(POOL, "ns", "first", "n1")
    first = engine.pop_fifo(POOL)
    engine.add(POOL, "ns", "second", "n1")
    second = engine.pop_fifo(POOL)
    engine.add(POOL, "ns", "churn", "n1")
    # `first` now has 1 later hand-out; make it `window` (and second's window - 1).
    pop, add = engine.pop_fifo, engine.add
    for _ in range(window - 1):
        k = pop(POOL)
        add(POOL, k.namespace, k.name, k.node, k.ready)
    assert engine.stats(POOL).put_back_records <= window
    assert engine.put_back(POOL, first) is False
    assert engine.put_back(POOL, second) is True


def test_put_back_into_a_removed_pool_raises_not_found(engine):
    engine.add(POOL, "ns", "a")
    a = engine.pop_fifo(POOL)
    engine.remove_pool(POOL)
    with pytest.raises(berth.NotFoundError):
        engine.put_back(POOL, a)


def test_put_back_records_are_counted_in_stats(engine):
    add_all(engine, [("a", "n1", True), ("b", "n1", True)])
    a = engine.pop_fifo(POOL)
    engine.pop_fifo(POOL)
    assert engine.stats(POOL).put_back_records == 2
    engine.put_back(POOL, a)
    assert engine.stats(POOL).put_back_records == 1


def test_put_back_accepts_a_rebuilt_pool_key(engine):
    engine.add(POOL, "ns", "a", "n1")
    a = engine.pop_fifo(POOL)
    rebuilt = berth.PoolKey(namespace="ns", name="a", token=a.token)
    assert engine.put_back(POOL, rebuilt) is True
    assert engine.snapshot(POOL)[0].node == "n1"  # the hand-out's node, not the rebuilt key's


# --------------------------------------------------------------------------
# add_batch
# --------------------------------------------------------------------------


def test_add_batch_returns_number_of_new_keys(engine):
    engine.add(POOL, "ns", "a", "n1")
    n = engine.add_batch(POOL, [("ns", "a", "n2", True), ("ns", "b", "n1", True), ("ns", "c", "", False)])
    assert n == 2
    assert engine.stats(POOL).keys == 3


def test_add_batch_applies_keys_in_order_and_last_values_win(engine):
    n = engine.add_batch(
        POOL,
        [("ns", "a", "n1", True), ("ns", "b", "n1", True), ("ns", "a", "n2", False)],
    )
    assert n == 2
    snap = engine.snapshot(POOL)
    assert names(snap) == ["a", "b"]
    assert (snap[0].node, snap[0].ready) == ("n2", False)


def test_add_batch_keeps_age_of_existing_keys(engine):
    add_all(engine, [("a", "n1", True), ("b", "n1", True)])
    engine.add_batch(POOL, [("ns", "c", "n1", True), ("ns", "a", "n3", True)])
    assert names(engine.snapshot(POOL)) == ["a", "b", "c"]


def test_add_batch_accepts_tuples_lists_pool_keys_and_key_like_objects(engine):
    class KeyLike:
        namespace, name, node, ready = "ns", "d", "n4", False

    batch = [
        ("ns", "a", "n1", True),
        ["ns", "b", "n2", False],
        berth.PoolKey("ns", "c", "n3", True, seq=99, token=7),
        KeyLike(),
    ]
    assert engine.add_batch(POOL, batch) == 4
    got = [(k.name, k.node, k.ready) for k in engine.snapshot(POOL)]
    assert got == [("a", "n1", True), ("b", "n2", False), ("c", "n3", True), ("d", "n4", False)]


def test_add_batch_accepts_any_iterable(engine):
    gen = (("ns", f"k{i}", f"n{i % 3}", True) for i in range(10))
    assert engine.add_batch(POOL, gen) == 10
    assert engine.stats(POOL).nodes == 3


def test_add_batch_of_nothing_adds_nothing(engine):
    assert engine.add_batch(POOL, []) == 0
    engine.add(POOL, "ns", "a")
    assert engine.add_batch(POOL, iter(())) == 0
    assert engine.stats(POOL).keys == 1


def test_add_batch_of_ten_thousand_keys(engine):
    n = engine.add_batch(POOL, [("ns", f"key-{i}", f"node-{i % 100}", i % 2 == 0) for i in range(10_000)])
    assert n == 10_000
    s = engine.stats(POOL)
    assert (s.keys, s.ready_keys, s.scheduled_keys, s.nodes) == (10_000, 5_000, 10_000, 100)
    assert [k.name for k in engine.snapshot(POOL)[:3]] == ["key-0", "key-1", "key-2"]


BAD_BATCH_KEYS = {
    "empty name": (("ns", "", "n1", True), berth.InvalidNameError),
    "name too long": (("ns", "x" * 254, "n1", True), berth.InvalidNameError),
    "namespace too long": (("x" * 64, "a", "n1", True), berth.InvalidNameError),
    "node too long": (("ns", "a", "x" * 254, True), berth.InvalidNameError),
    "NUL in node": (("ns", "a", "n\x001", True), berth.InvalidNameError),
    "lone surrogate": (("ns", "a\udc80", "n1", True), berth.InvalidNameError),
    "int name": (("ns", 5, "n1", True), TypeError),
    "int ready": (("ns", "a", "n1", 1), TypeError),
    "short tuple": (("ns", "a", "n1"), TypeError),
    "not a key": (42, TypeError),
}


@pytest.mark.parametrize("bad", BAD_BATCH_KEYS.values(), ids=BAD_BATCH_KEYS.keys())
def test_add_batch_with_one_bad_key_changes_nothing(engine, bad):
    bad_key, error = bad
    add_all(engine, [("old", "n1", True)])
    a = engine.pop_fifo(POOL)
    engine.add(POOL, "ns", "keep", "n1", True)
    before = (engine.snapshot(POOL), engine.stats(POOL))
    batch = [("ns", "old", "n9", False), ("ns", "new1", "n1", True), bad_key, ("ns", "new2", "n2", True)]
    with pytest.raises(error) as info:
        engine.add_batch(POOL, batch)
    if isinstance(info.value, berth.InvalidNameError):
        assert re.search(r"\b2\b", info.value.message), info.value.message  # the bad key's index
    assert (engine.snapshot(POOL), engine.stats(POOL)) == before
    assert engine.put_back(POOL, a) is True  # the failed batch did not re-add "old"


def test_add_batch_into_a_new_pool_with_a_bad_key_creates_nothing(engine):
    with pytest.raises(berth.InvalidNameError):
        engine.add_batch(POOL, [("ns", "a", "n1", True), ("ns", "", "n1", True)])
    with pytest.raises(berth.NotFoundError):
        engine.stats(POOL)


def test_add_batch_rejects_a_str_as_the_keys(engine):
    with pytest.raises(TypeError):
        engine.add_batch(POOL, "abcd")


def test_add_batch_propagates_errors_of_the_iterable(engine):
    def keys():
        yield ("ns", "a", "n1", True)
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        engine.add_batch(POOL, keys())
    with pytest.raises(berth.NotFoundError):
        engine.stats(POOL)


# --------------------------------------------------------------------------
# stats / snapshot / node_stats
# --------------------------------------------------------------------------


def test_stats_counts_keys_ready_scheduled_and_nodes(engine):
    add_all(
        engine,
        [("a", "n1", True), ("b", "n1", False), ("c", "n2", True), ("d", "", True), ("e", "", False)],
    )
    s = engine.stats(POOL)
    assert isinstance(s, berth.PoolStats)
    assert s == berth.PoolStats(keys=5, ready_keys=3, scheduled_keys=3, nodes=2, put_back_records=0)


def test_stats_nodes_drop_when_a_node_empties(engine):
    add_all(engine, [("a", "n1", True), ("b", "n2", True)])
    engine.remove(POOL, "ns", "a")
    assert engine.stats(POOL).nodes == 1


def test_snapshot_lists_every_key_oldest_first(engine):
    add_all(engine, [("c", "n2", True), ("a", "", False), ("b", "n1", True)])
    engine.add(POOL, "ns2", "z", "n1", True)
    snap = engine.snapshot(POOL)
    assert [(k.namespace, k.name, k.node, k.ready) for k in snap] == [
        ("ns", "c", "n2", True),
        ("ns", "a", "", False),
        ("ns", "b", "n1", True),
        ("ns2", "z", "n1", True),
    ]
    assert [k.seq for k in snap] == sorted(k.seq for k in snap)
    assert len({k.seq for k in snap}) == 4
    assert all(isinstance(k, berth.PoolKey) and k.token == 0 for k in snap)


def test_snapshot_of_an_empty_pool_is_empty(engine):
    engine.add(POOL, "ns", "a")
    engine.pop_fifo(POOL)
    assert engine.snapshot(POOL) == []


def test_node_stats_counts_per_node_sorted_by_name_without_unscheduled(engine):
    add_all(
        engine,
        [("a", "zeta", True), ("b", "alpha", False), ("c", "alpha", True), ("d", "", True), ("e", "mid", False)],
    )
    ns = engine.node_stats(POOL)
    assert list(ns) == ["alpha", "mid", "zeta"]
    assert ns["alpha"] == berth.NodeStat(node="alpha", keys=2, ready_keys=1)
    assert ns["mid"] == berth.NodeStat(node="mid", keys=1, ready_keys=0)
    assert ns["zeta"] == berth.NodeStat(node="zeta", keys=1, ready_keys=1)


def test_node_stats_of_a_pool_without_scheduled_keys_is_empty(engine):
    engine.add(POOL, "ns", "a")
    assert engine.node_stats(POOL) == {}


@pytest.mark.parametrize("method", ["pop_fifo", "pop_spread", "stats", "snapshot", "node_stats"])
def test_unknown_pool_raises_not_found(engine, method):
    engine.add("other", "ns", "a")
    with pytest.raises(berth.NotFoundError) as info:
        getattr(engine, method)(POOL)
    assert info.value.status == berth.Status.ERR_NOT_FOUND


def test_non_ascii_names_round_trip(engine):
    engine.add("pööl/ü", "nß", "ключ-🔑", "nœud-é", True)
    k = engine.pop_spread("pööl/ü")
    assert (k.namespace, k.name, k.node) == ("nß", "ключ-🔑", "nœud-é")
    engine.add_batch("pööl/ü", [("nß", "名前", "nœud-é", True)])
    assert engine.snapshot("pööl/ü")[0].name == "名前"
    assert list(engine.node_stats("pööl/ü")) == ["nœud-é"]
