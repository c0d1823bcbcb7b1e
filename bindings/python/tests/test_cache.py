"""berth.Cache: the version guard, relists, watch batches, lists and their views."""

from __future__ import annotations

import array
import dataclasses
import gc
import random
import re
import sys
from types import MappingProxyType

import pytest
from conftest import rows, rss_mib

import berth

# --------------------------------------------------------------------------
# Sync
# --------------------------------------------------------------------------


def test_list_and_get_raise_not_synced_before_the_first_replace(cache):
    assert cache.upsert("ns", "a", 5) is True  # writes are fine before the sync
    for call in (lambda: cache.list(), lambda: cache.list("ns", "a=b"), lambda: cache.get("ns", "a")):
        with pytest.raises(berth.NotSyncedError) as info:
            call()
        assert info.value.status == berth.Status.ERR_NOT_SYNCED == 8
        assert info.value.status_name == "BERTH_ERR_NOT_SYNCED"
    s = cache.stats()  # works before the sync
    assert s.synced is False and s.objects == 1
    cache.replace([], 1)  # a relist older than the write keeps it
    assert cache.stats().synced is True
    assert rows(cache.list()) == [("ns", "a", 5, {}, b"")]
    assert issubclass(berth.NotSyncedError, berth.Error)


def test_an_empty_relist_syncs(cache):
    cache.replace([], 5)
    assert len(cache.list()) == 0
    assert cache.get("ns", "a") is None
    s = cache.stats()
    assert s.synced is True and s.resource_version >= 5


# --------------------------------------------------------------------------
# The version guard
# --------------------------------------------------------------------------


def test_older_and_equal_upserts_are_ignored(synced):
    assert synced.upsert("ns", "a", 5, {"v": "five"}, b"5") is True
    assert synced.upsert("ns", "a", 5, {"v": "again"}, b"5b") is False
    assert synced.upsert("ns", "a", 4, {"v": "four"}, b"4") is False
    assert rows([synced.get("ns", "a")]) == [("ns", "a", 5, {"v": "five"}, b"5")]
    assert synced.upsert("ns", "a", 6, {"v": "six"}, b"6") is True
    assert rows([synced.get("ns", "a")]) == [("ns", "a", 6, {"v": "six"}, b"6")]
    s = synced.stats()
    assert (s.objects, s.applied, s.ignored, s.resource_version) == (1, 2, 2, 6)


def test_upsert_replaces_labels_and_payload_entirely(synced):
    synced.upsert("ns", "a", 1, {"x": "1", "y": "2"}, b"old")
    synced.upsert("ns", "a", 2, {"z": "3"})
    assert rows([synced.get("ns", "a")]) == [("ns", "a", 2, {"z": "3"}, b"")]
    assert len(synced.list("", "x")) == 0
    assert len(synced.list("", "z=3")) == 1


def test_delete_leaves_a_tombstone_that_stops_an_older_add(synced):
    assert synced.upsert("ns", "a", 5) is True
    assert synced.delete("ns", "a", 7) is True
    assert synced.get("ns", "a") is None
    assert synced.stats().tombstones == 1
    # A late ADDED from before the delete must not resurrect the object.
    assert synced.upsert("ns", "a", 6) is False
    assert synced.upsert("ns", "a", 7) is False
    assert synced.get("ns", "a") is None
    # A genuinely newer add does.
    assert synced.upsert("ns", "a", 8, {"back": "yes"}) is True
    assert rows([synced.get("ns", "a")]) == [("ns", "a", 8, {"back": "yes"}, b"")]


def test_delete_older_than_the_cached_object_is_ignored(synced):
    synced.upsert("ns", "a", 10)
    assert synced.delete("ns", "a", 9) is False
    assert synced.get("ns", "a").resource_version == 10  # type: ignore[union-attr]


def test_delete_of_an_absent_object_records_a_tombstone(synced):
    synced.delete("ns", "ghost", 10)
    assert synced.stats().tombstones == 1
    assert synced.upsert("ns", "ghost", 9) is False
    assert synced.get("ns", "ghost") is None
    assert synced.upsert("ns", "ghost", 11) is True


def test_delete_with_resource_version_0_deletes_whatever_is_cached(synced):
    synced.upsert("ns", "a", 100, {"k": "v"})
    assert synced.delete("ns", "a", 9) is False  # an older delete is ignored...
    assert synced.delete("ns", "a") is True  # ...version 0 (the default) is not
    assert synced.get("ns", "a") is None
    assert synced.upsert("ns", "a", 100) is False  # the tombstone carries the deleted version
    assert synced.upsert("ns", "a", 101) is True
    synced.upsert("ns", "b", 7)
    assert synced.delete("ns", "b", 0) is True
    assert synced.get("ns", "b") is None
    tombstones = synced.stats().tombstones
    assert synced.delete("ns", "never-cached", 0) is False  # nothing to delete, no tombstone
    assert synced.stats().tombstones == tombstones


def test_tombstones_are_bounded_oldest_forgotten_first():
    with berth.Cache(tombstone_limit=2) as c:
        c.replace([], 1)
        for name in ("t1", "t2", "t3"):
            c.delete("ns", name, 10)
        assert c.stats().tombstones == 2
        assert c.upsert("ns", "t3", 5) is False  # still remembered
        assert c.upsert("ns", "t1", 5) is True  # forgotten: the oldest


def test_tombstone_limit_default_keeps_many():
    with berth.Cache() as c:
        for i in range(1000):
            c.delete("ns", f"t{i}", 10)
        assert c.stats().tombstones == 1000


# --------------------------------------------------------------------------
# replace (a relist)
# --------------------------------------------------------------------------


def test_replace_keeps_newer_upserts_and_newer_tombstones(cache):
    cache.upsert("ns", "a", 20, {"v": "write-through"}, b"new")  # after the list's rv 15
    cache.delete("ns", "b", 25)  # deleted after the list
    cache.upsert("ns", "d", 5)  # older than the list and not in it: gone
    cache.delete("ns", "e", 3)  # tombstone older than the list: the list wins
    cache.replace(
        [
            berth.Object("ns", "a", 10, {"v": "listed"}, b"old"),
            berth.Object("ns", "b", 12),
            berth.Object("ns", "c", 14, {"v": "c"}),
            berth.Object("ns", "e", 11),
        ],
        15,
    )
    assert rows(cache.list()) == [
        ("ns", "a", 20, {"v": "write-through"}, b"new"),
        ("ns", "c", 14, {"v": "c"}, b""),
        ("ns", "e", 11, {}, b""),
    ]
    assert cache.upsert("ns", "b", 24) is False  # the newer tombstone survived the relist
    s = cache.stats()
    assert s.synced is True and s.resource_version >= 25


def test_a_second_replace_drops_what_the_new_list_lacks(synced):
    synced.replace([("ns", "a", 2), ("ns", "b", 3)], 3)
    synced.replace([("ns", "b", 3), ("ns", "c", 4)], 4)
    assert [o.name for o in synced.list()] == ["b", "c"]


def test_replace_takes_objects_tuples_views_and_attribute_objects(synced):
    @dataclasses.dataclass
    class Pod:
        namespace: str
        name: str
        resource_version: int
        labels: dict[str, str]
        payload: bytes

    @dataclasses.dataclass
    class Bare:  # labels and payload are optional attributes
        namespace: str
        name: str
        resource_version: int

    synced.replace(
        [
            berth.Object("ns", "obj", 2, {"k": "o"}, b"o"),
            ("ns", "t3", 3),
            ("ns", "t4", 4, {"k": "t"}),
            ["ns", "l5", 5, {"k": "l"}, bytearray(b"l")],
            Pod("ns", "pod", 6, {"k": "p"}, b"p"),
            Bare("ns", "bare", 7),
        ],
        10,
    )
    expected = [
        ("ns", "bare", 7, {}, b""),
        ("ns", "l5", 5, {"k": "l"}, b"l"),
        ("ns", "obj", 2, {"k": "o"}, b"o"),
        ("ns", "pod", 6, {"k": "p"}, b"p"),
        ("ns", "t3", 3, {}, b""),
        ("ns", "t4", 4, {"k": "t"}, b""),
    ]
    assert rows(synced.list()) == expected
    # ObjectViews of another cache's list are copied from their bytes.
    with berth.Cache() as other:
        other.replace(synced.list(), 10)
        assert rows(other.list()) == expected
        other.replace(list(synced.list())[:2], 11)
        assert rows(other.list()) == expected[:2]


def test_replace_from_a_generator(synced):
    synced.replace((("ns", f"o{i}", i + 1) for i in range(50)), 60)
    assert len(synced.list()) == 50


def test_replace_is_all_or_nothing(synced):
    synced.upsert("ns", "keep", 2)
    before = rows(synced.list())
    bad_items = [
        (("ns", "", 3), berth.InvalidNameError),
        (("ns", "x", 3, {"bad key!": "v"}), berth.InvalidNameError),
        (("ns", "x", 3, {"k": "bad value!"}), berth.InvalidNameError),
        (("ns", "x", 3, {"k": 1}), TypeError),
        (("ns", "x"), TypeError),
        (("ns", "x", "3"), TypeError),
        (object(), TypeError),
    ]
    for item, exc in bad_items:
        with pytest.raises(exc) as info:
            synced.replace([("ns", "ok1", 3), ("ns", "ok2", 3), item], 5)
        # The message names the index of the bad object.
        assert re.search(r"\b2\b", str(info.value)), str(info.value)
        assert rows(synced.list()) == before


# --------------------------------------------------------------------------
# apply (a batch of watch events)
# --------------------------------------------------------------------------


def test_apply_events_in_order(synced):
    n = synced.apply(
        [
            berth.Event(berth.EventType.ADDED, "ns", "a", 2, {"app": "web"}, b"a2"),
            (berth.EventType.ADDED, "ns", "b", 3, {"app": "db"}, b"b3"),
            (1, "ns", "a", 4, {"app": "web", "v": "2"}, b"a4"),  # MODIFIED as an int
            ("DELETED", "ns", "b", 5),  # the watch API's string, 4 fields
            ("ADDED", "ns", "b", 4, {"late": "x"}),  # older than the delete: ignored
            ("MODIFIED", "ns", "a", 3, {}, b"stale"),  # older than a@4: ignored
        ]
    )
    assert n == 4
    assert rows(synced.list()) == [("ns", "a", 4, {"app": "web", "v": "2"}, b"a4")]
    assert synced.stats().ignored == 2


def test_apply_one_event(synced):
    assert synced.apply(berth.Event("ADDED", "ns", "a", 2)) == 1
    assert synced.apply(berth.Event(berth.EventType.DELETED, "ns", "a", 3)) == 1
    assert synced.get("ns", "a") is None


def test_apply_deleted_ignores_labels_and_payload(synced):
    synced.upsert("ns", "a", 2)
    # For DELETED only namespace, name and resource_version are read.
    assert synced.apply([("DELETED", "ns", "a", 3, {"bad key!": "x"}, "not bytes")]) == 1
    assert synced.get("ns", "a") is None


def test_apply_from_a_generator_and_empty(synced):
    assert synced.apply([]) == 0
    assert synced.apply(("ADDED", "ns", f"o{i}", i + 2) for i in range(100)) == 100
    assert len(synced.list("ns")) == 100


@pytest.mark.parametrize(
    "bad, exc",
    [
        (("ADDED", "ns", "", 3), berth.InvalidNameError),
        (("ADDED", "ns", "x" * 254, 3), berth.InvalidNameError),
        (("ADDED", "n" * 64, "x", 3), berth.InvalidNameError),
        (("ADDED", "ns", "x", 3, {"-bad": "v"}), berth.InvalidNameError),
        (("ADDED", "ns", "x", 0), berth.InvalidArgumentError),
        (("ADDED", "ns", "x", -1), berth.InvalidArgumentError),
        (("BOOKMARK", "ns", "x", 3), berth.InvalidArgumentError),
        ((3, "ns", "x", 3), berth.InvalidArgumentError),
        ((None, "ns", "x", 3), TypeError),
        (("ADDED", "ns", "x"), TypeError),
        (("ADDED", "ns", "x", 3, {}, b"", "extra"), TypeError),
        (("ADDED", "ns", 7, 3), TypeError),
        (("ADDED", "ns", "x", 3, ["k", "v"]), TypeError),
        (("ADDED", "ns", "x", 3, {}, "str payload"), TypeError),
        ("ADDED ns x 3", TypeError),
    ],
    ids=lambda v: repr(v)[:40],
)
def test_apply_is_all_or_nothing_on_a_bad_event(synced, bad, exc):
    synced.upsert("ns", "keep", 2, {"k": "v"}, b"keep")
    before, stats_before = rows(synced.list()), synced.stats()
    with pytest.raises(exc) as info:
        synced.apply([("ADDED", "ns", "new1", 3), ("DELETED", "ns", "keep", 4), bad])
    text = info.value.message if isinstance(info.value, berth.Error) else str(info.value)
    assert re.search(r"\b2\b", text), text  # names the bad event's index
    assert rows(synced.list()) == before
    assert synced.stats() == stats_before


def test_apply_rejects_non_iterables(synced):
    for bad in (5, "ADDED", b"x", None):
        with pytest.raises(TypeError):
            synced.apply(bad)  # type: ignore[arg-type]


# --------------------------------------------------------------------------
# list and get
# --------------------------------------------------------------------------


def naive(objects: dict[tuple[str, str], tuple], namespace: str, sel: berth.Selector) -> list[tuple]:
    return [
        row
        for key, row in sorted(objects.items())
        if (not namespace or key[0] == namespace) and sel.matches(row[3])
    ]


KEYS = ["app", "tier", "env", "example.com/team", "zone"]
VALUES = ["a", "b", "c", "web", "db", "1", "7", ""]


def random_labels(rng: random.Random) -> dict[str, str]:
    return {k: rng.choice(VALUES) for k in rng.sample(KEYS, rng.randint(0, len(KEYS)))}


def random_selector(rng: random.Random) -> str:
    reqs = []
    for key in rng.sample(KEYS, rng.randint(0, 3)):
        op = rng.choice(["=", "==", "!=", "in", "notin", "exists", "!", ">", "<"])
        if op in ("in", "notin"):
            vals = ",".join(rng.sample(VALUES, rng.randint(1, 3)))
            reqs.append(f"{key} {op} ({vals})")
        elif op == "exists":
            reqs.append(key)
        elif op == "!":
            reqs.append("!" + key)
        elif op in (">", "<"):
            reqs.append(f"{key}{op}{rng.randint(0, 9)}")
        else:
            reqs.append(f"{key}{op}{rng.choice(VALUES)}")
    return ",".join(reqs)


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_list_equals_a_naive_filter_over_random_objects(seed):
    rng = random.Random(seed)
    namespaces = [f"ns-{i}" for i in range(6)] + [""]
    model: dict[tuple[str, str], tuple] = {}
    rv = 0

    def obj(ns: str, name: str) -> tuple:
        nonlocal rv
        rv += 1
        return (ns, name, rv, random_labels(rng), rng.randbytes(rng.randint(0, 40)))

    with berth.Cache() as c:
        for _ in range(400):
            row = obj(rng.choice(namespaces), f"obj-{rng.randint(0, 300)}")
            model[row[:2]] = row
        c.replace(list(model.values()), rv)
        # Then a stream of writes, each newer than everything before it.
        for _ in range(300):
            ns, name = rng.choice(namespaces), f"obj-{rng.randint(0, 300)}"
            if rng.random() < 0.3:
                rv += 1
                c.delete(ns, name, rv)
                model.pop((ns, name), None)
            elif rng.random() < 0.5:
                row = obj(ns, name)
                assert c.upsert(*row) is True
                model[(ns, name)] = row
            else:
                row = obj(ns, name)
                c.apply([("MODIFIED", *row)])
                model[(ns, name)] = row
        assert rows(c.list()) == [r for _, r in sorted(model.items())]
        for _ in range(60):
            ns = rng.choice(namespaces)
            text = random_selector(rng)
            sel = berth.Selector(text)
            expected = naive(model, ns, sel)
            assert rows(c.list(ns, sel)) == expected, (ns, text)
            assert rows(c.list(ns, text)) == expected, (ns, text)
            assert rows(c.list(namespace=ns, selector=sel)) == expected
        assert c.stats().objects == len(model)


def test_list_by_namespace_only_and_everything(synced):
    synced.replace([("a", "x", 2), ("b", "y", 3), ("", "z", 4), ("a", "w", 5)], 5)
    assert [(o.namespace, o.name) for o in synced.list("a")] == [("a", "w"), ("a", "x")]
    assert [(o.namespace, o.name) for o in synced.list()] == [("", "z"), ("a", "w"), ("a", "x"), ("b", "y")]
    assert len(synced.list("nope")) == 0


def test_list_resource_version_is_the_caches(synced):
    synced.upsert("ns", "a", 41)
    lst = synced.list()
    assert lst.resource_version == synced.stats().resource_version >= 41
    synced.upsert("ns", "b", 50)
    assert lst.resource_version < synced.list().resource_version  # a snapshot


def test_list_argument_errors(synced):
    with pytest.raises(TypeError, match="selector"):
        synced.list("ns", 5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="namespace"):
        synced.list(None)  # type: ignore[arg-type]
    with pytest.raises(berth.BadSelectorError, match="at byte"):
        synced.list("ns", "a in (x y)")
    with pytest.raises(berth.InvalidNameError):
        synced.list("n" * 64)
    sel = berth.Selector("a")
    sel.close()
    with pytest.raises(berth.ClosedError, match="selector"):
        synced.list("ns", sel)


def test_get(synced):
    synced.upsert("ns", "a", 3, {"app": "web"}, b"payload")
    v = synced.get("ns", "a")
    assert isinstance(v, berth.ObjectView)
    assert (v.namespace, v.name, v.resource_version, v.labels, bytes(v.payload)) == (
        "ns", "a", 3, {"app": "web"}, b"payload",
    )
    assert synced.get("ns", "b") is None
    assert synced.get("other", "a") is None
    with pytest.raises(berth.InvalidNameError):
        synced.get("ns", "")


def test_unicode_names_labels_and_payload_round_trip(synced):
    synced.upsert("ns", "café-ü", 2, {"k": "v"}, "ünïcødé".encode())
    v = synced.get("ns", "café-ü")
    assert v is not None and v.name == "café-ü" and bytes(v.payload).decode() == "ünïcødé"


# --------------------------------------------------------------------------
# ObjectList and ObjectView
# --------------------------------------------------------------------------


def test_object_list_is_a_sequence_of_views(synced):
    synced.replace([("ns", f"o{i}", i + 1, {"i": str(i)}) for i in range(5)], 10)
    lst = synced.list()
    assert len(lst) == 5 and bool(lst)
    assert [o.name for o in lst] == ["o0", "o1", "o2", "o3", "o4"]
    assert lst[0].name == "o0" and lst[-1].name == "o4" and lst[-5].name == "o0"
    assert [o.name for o in lst[1:4]] == ["o1", "o2", "o3"]
    assert [o.name for o in lst[::-2]] == ["o4", "o2", "o0"]
    for bad in (5, -6, 2**70):
        with pytest.raises(IndexError):
            lst[bad]
    with pytest.raises(TypeError):
        lst["o1"]  # type: ignore[call-overload]
    it = iter(lst)
    assert it.__length_hint__() == 5  # type: ignore[attr-defined]
    assert next(it).name == "o0"
    assert len(list(it)) == 4
    assert list(it) == []
    assert re.fullmatch(r"<berth\.ObjectList of 5 objects at resource_version \d+>", repr(lst))
    assert repr(lst[2]) == "<berth.ObjectView ns/o2 resource_version=3>"
    assert not synced.list("empty")


def test_views_decode_on_every_read(synced):
    synced.upsert("ns", "a", 2, {"x": "1"})
    v = synced.get("ns", "a")
    assert v is not None
    labels = v.labels
    labels["x"] = "changed"  # a fresh dict each time: the view is unchanged
    assert v.labels == {"x": "1"}
    assert v.labels is not v.labels


def test_object_types_cannot_be_made_from_python():
    for cls in (berth.ObjectList, berth.ObjectView):
        with pytest.raises(TypeError):
            cls()


def test_payload_is_bytes_that_json_loads_takes(synced):
    import json

    synced.upsert("ns", "a", 2, payload=b'{"phase": "Running"}')
    v = synced.get("ns", "a")
    assert v is not None
    assert type(v.payload) is bytes
    assert json.loads(v.payload) == {"phase": "Running"}
    assert json.loads(synced.list("ns")[0].payload) == {"phase": "Running"}


def test_memoryview_of_a_view_is_its_payload_read_only(synced):
    synced.upsert("ns", "a", 2, payload=b"hello")
    v = synced.get("ns", "a")
    assert v is not None
    mv = memoryview(v)
    assert mv.readonly and mv.format == "B" and mv.nbytes == 5 and bytes(mv) == b"hello"
    with pytest.raises(TypeError):
        mv[0] = 0x41
    assert bytes(v) == b"hello"
    import ctypes

    for exporter in (mv, v):  # a writable export is refused
        with pytest.raises((TypeError, BufferError)):
            ctypes.c_char.from_buffer(exporter)  # type: ignore[arg-type]
    assert v.payload == b"hello"


def test_a_view_is_unchanged_by_later_writes_and_outlives_its_cache():
    cache = berth.Cache()
    cache.replace([("ns", "a", 1, {"app": "web"}, b"v1")], 1)
    got = cache.get("ns", "a")
    listed = cache.list()[0]
    assert got is not None
    cache.upsert("ns", "a", 2, {"app": "db"}, b"v2")
    assert (got.resource_version, got.labels, got.payload) == (1, {"app": "web"}, b"v1")
    cache.delete("ns", "a", 3)
    cache.replace([("ns", f"o{i}", 10, {}, b"x" * 100) for i in range(100)], 10)
    cache.close()
    del cache
    gc.collect()
    for v in (got, listed):
        assert (v.name, v.resource_version, v.labels, bytes(memoryview(v))) == ("a", 1, {"app": "web"}, b"v1")


def test_payload_survives_the_list_going_out_of_scope(synced):
    synced.replace([("ns", f"o{i:02d}", i + 1, {}, bytes([i]) * 1000) for i in range(50)], 60)

    def payloads() -> list[memoryview]:
        lst = synced.list("ns")
        return [memoryview(lst[i]) for i in (0, 25, 49)]

    mvs = payloads()
    gc.collect()
    # Lists of the same size but other bytes: memory freed too early would
    # be reused for them and overwritten.
    synced.replace([("ns", f"o{i:02d}", i + 100, {}, b"\xee" * 1000) for i in range(50)], 200)
    junk = [synced.list("ns") for _ in range(200)]
    assert all(bytes(lst[0].payload) == b"\xee" * 1000 for lst in junk)
    del junk
    assert [bytes(m) for m in mvs] == [bytes([0]) * 1000, bytes([25]) * 1000, bytes([49]) * 1000]


def test_views_iterators_and_payloads_hold_their_list(synced):
    synced.replace([("ns", f"o{i}", i + 1, {}, b"data") for i in range(5)], 10)
    lst = synced.list()
    base = sys.getrefcount(lst)
    view = lst[3]
    assert sys.getrefcount(lst) == base + 1
    mv = memoryview(view)
    del view
    assert sys.getrefcount(lst) == base + 1  # the memoryview holds the view, which holds the list
    it = iter(lst)
    assert sys.getrefcount(lst) == base + 2
    list(it)
    assert sys.getrefcount(lst) == base + 1  # an exhausted iterator lets go
    del it, mv
    assert sys.getrefcount(lst) == base
    views = lst[1:4]
    assert sys.getrefcount(lst) == base + 3
    del views
    assert sys.getrefcount(lst) == base


def buffer_address(obj: object) -> int:
    """The address of obj's buffer export."""
    import ctypes

    class PyBuffer(ctypes.Structure):
        _fields_ = [
            ("buf", ctypes.c_void_p),
            ("obj", ctypes.c_void_p),
            ("len", ctypes.c_ssize_t),
            ("itemsize", ctypes.c_ssize_t),
            ("readonly", ctypes.c_int),
            ("ndim", ctypes.c_int),
            ("format", ctypes.c_char_p),
            ("shape", ctypes.c_void_p),
            ("strides", ctypes.c_void_p),
            ("suboffsets", ctypes.c_void_p),
            ("internal", ctypes.c_void_p),
        ]

    api = ctypes.pythonapi
    api.PyObject_GetBuffer.argtypes = [ctypes.py_object, ctypes.POINTER(PyBuffer), ctypes.c_int]
    api.PyBuffer_Release.argtypes = [ctypes.POINTER(PyBuffer)]
    view = PyBuffer()
    assert api.PyObject_GetBuffer(obj, ctypes.byref(view), 0) == 0
    try:
        return int(view.buf)
    finally:
        api.PyBuffer_Release(ctypes.byref(view))


def test_views_point_into_the_cached_objects_without_copies(synced):
    size = 4096
    synced.replace([("ns", f"o{i:03d}", i + 1, {}, bytes([i % 251]) * size) for i in range(64)], 100)
    lst = synced.list()
    addrs = [buffer_address(o) for o in lst]
    assert len(set(addrs)) == 64
    # A list, another list and a get all read the one object the cache holds.
    again = synced.list()
    got = synced.get("ns", "o010")
    assert buffer_address(lst[10]) == buffer_address(again[10]) == buffer_address(got) == addrs[10]


def test_dropped_lists_are_freed(synced):
    import resource

    synced.replace([("ns", f"o{i}", i + 1, {}, b"x" * 4000) for i in range(1000)], 2000)  # ~4 MB per list

    def churn(n: int) -> None:
        for _ in range(n):
            lst = synced.list()
            _ = [len(o.payload) for o in lst[:10]]
            del lst

    churn(3)
    gc.collect()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    churn(40)  # ~160 MB if lists leaked
    gc.collect()
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mib < 40


# --------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["namespace", "name"])
@pytest.mark.parametrize("bad", [5, None, b"bytes"], ids=repr)
def test_names_must_be_str(synced, field, bad):
    args = {"namespace": "ns", "name": "a", "resource_version": 2}
    with pytest.raises(TypeError, match=field):
        synced.upsert(**{**args, field: bad})
    with pytest.raises(TypeError, match=field):
        synced.delete(**{**args, field: bad})


@pytest.mark.parametrize("bad", ["3", 3.0, None, True], ids=repr)
def test_resource_version_must_be_an_int(synced, bad):
    with pytest.raises(TypeError, match="resource_version"):
        synced.upsert("ns", "a", bad)
    with pytest.raises(TypeError, match="resource_version"):
        synced.delete("ns", "a", bad)


@pytest.mark.parametrize("bad", [-1, 2**64], ids=["negative", "too big"])
def test_resource_version_out_of_uint64_range_is_an_invalid_argument(synced, bad):
    with pytest.raises(berth.InvalidArgumentError, match="resource_version"):
        synced.upsert("ns", "a", bad)
    with pytest.raises(berth.InvalidArgumentError):
        synced.replace([], bad)


def test_resource_version_0_is_an_invalid_argument_for_upsert(synced):
    with pytest.raises(berth.InvalidArgumentError) as info:
        synced.upsert("ns", "a", 0)
    assert info.value.status == berth.Status.ERR_INVALID_ARGUMENT
    assert synced.stats().objects == 0
    assert synced.upsert("ns", "a", 2**64 - 1) is True  # the largest is fine


def test_empty_and_overlong_names_are_invalid(synced):
    for ns, name in [("ns", ""), ("n" * 64, "a"), ("ns", "x" * 254), ("ns", "a\x00b"), ("ns", "\ud800")]:
        with pytest.raises(berth.InvalidNameError):
            synced.upsert(ns, name, 2)
        with pytest.raises(berth.InvalidNameError):
            synced.delete(ns, name, 2)
    assert synced.upsert("n" * 63, "x" * 253, 2) is True
    assert synced.upsert("", "no-namespace", 2) is True


@pytest.mark.parametrize(
    "labels",
    [{"-bad": "v"}, {"": "v"}, {"a/b/c": "v"}, {"k": "-v"}, {"k": "v" * 64}, {"k" * 64: "v"}, {"k": "a b"}],
    ids=repr,
)
def test_invalid_labels_are_invalid_names(synced, labels):
    with pytest.raises(berth.InvalidNameError):
        synced.upsert("ns", "a", 2, labels)
    assert synced.get("ns", "a") is None


def test_valid_label_forms_are_accepted(synced):
    labels = {"example.com/team": "a-b_c.d", "k": "", "K9": "V" * 63, "x" * 63: "y"}
    assert synced.upsert("ns", "a", 2, labels)
    assert synced.get("ns", "a").labels == labels  # type: ignore[union-attr]


def test_too_many_labels_is_an_invalid_argument(synced):
    labels = {f"k{i}": "v" for i in range(berth.MAX_LABELS + 1)}
    with pytest.raises(berth.InvalidArgumentError):
        synced.upsert("ns", "a", 2, labels)
    labels.pop("k0")
    assert synced.upsert("ns", "a", 2, labels) is True


@pytest.mark.parametrize(
    "labels", [["k", "v"], "k=v", {"k": 1}, {1: "v"}, {"k": None}, 5], ids=repr
)
def test_labels_must_be_a_mapping_of_str(synced, labels):
    with pytest.raises(TypeError, match="labels"):
        synced.upsert("ns", "a", 2, labels)


def test_labels_may_be_any_mapping_or_none(synced):
    assert synced.upsert("ns", "a", 2, MappingProxyType({"k": "v"}))
    assert synced.upsert("ns", "b", 2, None)
    assert synced.upsert("ns", "c", 2, labels={})
    assert [o.labels for o in synced.list()] == [{"k": "v"}, {}, {}]


@pytest.mark.parametrize("bad", ["text", 5, [1, 2]], ids=repr)
def test_payload_must_be_bytes_like(synced, bad):
    with pytest.raises(TypeError, match="payload"):
        synced.upsert("ns", "a", 2, {}, bad)


def test_payload_takes_any_bytes_like(synced):
    synced.upsert("ns", "a", 2, payload=bytearray(b"ba"))
    synced.upsert("ns", "b", 2, payload=memoryview(b"xmvx")[1:3])
    synced.upsert("ns", "c", 2, payload=array.array("B", [1, 2, 3]))
    synced.upsert("ns", "d", 2, payload=synced.get("ns", "a").payload)  # type: ignore[union-attr]
    synced.upsert("ns", "e", 2, payload=None)
    assert [bytes(o.payload) for o in synced.list()] == [b"ba", b"mv", b"\x01\x02\x03", b"ba", b""]
    with pytest.raises(BufferError):
        synced.upsert("ns", "f", 2, payload=memoryview(b"abcdef")[::2])  # not contiguous


def test_payload_over_the_limit_is_an_invalid_argument(synced):
    with pytest.raises(berth.InvalidArgumentError):
        synced.upsert("ns", "a", 2, payload=bytes(berth.MAX_PAYLOAD_LEN + 1))
    assert synced.stats().objects == 0


def test_cache_constructor_arguments():
    with pytest.raises(TypeError):
        berth.Cache("many")  # type: ignore[arg-type]
    for bad in (-1, 2**32, 2**64):
        with pytest.raises(berth.InvalidArgumentError, match="uint32"):
            berth.Cache(tombstone_limit=bad)
    berth.Cache(2**32 - 1).close()


def test_bad_argument_passing(synced):
    with pytest.raises(TypeError, match="at most"):
        synced.upsert("ns", "a", 2, {}, b"", "extra")  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="unexpected keyword argument 'rv'"):
        synced.upsert("ns", "a", rv=2)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="missing required argument 'resource_version'"):
        synced.upsert("ns", "a")  # type: ignore[call-arg]
    assert synced.upsert(payload=b"p", labels={"k": "v"}, resource_version=2, name="a", namespace="ns")
    assert synced.delete(name="a", namespace="ns") is True


CACHE_CALLS = {
    "upsert": lambda c: c.upsert("ns", "a", 2),
    "delete": lambda c: c.delete("ns", "a", 2),
    "apply": lambda c: c.apply([("ADDED", "ns", "a", 2)]),
    "replace": lambda c: c.replace([], 2),
    "list": lambda c: c.list(),
    "get": lambda c: c.get("ns", "a"),
    "stats": lambda c: c.stats(),
}


@pytest.mark.parametrize("method", CACHE_CALLS)
def test_every_method_after_close_raises_closed_error(method):
    c = berth.Cache()
    c.replace([], 1)
    CACHE_CALLS[method](c)  # works while open
    c.close()
    with pytest.raises(berth.ClosedError, match="cache") as info:
        CACHE_CALLS[method](c)
    assert info.value.status == berth.Status.ERR_BAD_HANDLE


def test_lists_stay_valid_after_the_cache_is_closed():
    c = berth.Cache()
    c.replace([("ns", "a", 2, {"k": "v"}, b"data")], 2)
    lst, view = c.list(), c.get("ns", "a")
    c.close()
    del c
    gc.collect()
    assert rows(lst) == [("ns", "a", 2, {"k": "v"}, b"data")]
    assert bytes(view.payload) == b"data"  # type: ignore[union-attr]


def test_cache_close_and_context_manager():
    c = berth.Cache()
    assert c.closed is False and repr(c) == "<berth.Cache open>"
    c.close()
    c.close()
    assert c.closed is True and repr(c) == "<berth.Cache closed>"
    with pytest.raises(KeyError):
        with berth.Cache() as c2:
            assert isinstance(c2, berth.Cache)
            raise KeyError("x")
    assert c2.closed


def test_cache_cannot_be_subclassed_and_needs_init():
    with pytest.raises(TypeError):
        type("MyCache", (berth.Cache,), {})
    c = berth.Cache.__new__(berth.Cache)
    with pytest.raises(TypeError):
        c.stats()
    with pytest.raises(TypeError):
        berth.Cache.stats(object())  # type: ignore[arg-type]


def test_dropping_an_open_cache_frees_it():
    import resource

    def fill_and_drop() -> None:
        c = berth.Cache()
        c.replace([("ns", f"o{i}", i + 1, {"app": "x"}, b"p" * 200) for i in range(10_000)], 10_001)
        del c

    fill_and_drop()
    gc.collect()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for _ in range(25):  # ~25 x 3+ MiB if caches leaked
        fill_and_drop()
    gc.collect()
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mib < 40


@pytest.mark.parametrize("how", ["delete every object", "close"])
def test_emptying_or_closing_a_cache_gives_its_memory_back_to_the_os(how):
    # The current resident set, not the peak (berth.h, "Memory"). Tombstones
    # are state the cache keeps: a small limit keeps them out of the figure.
    def fill(c: berth.Cache, n: int) -> None:
        for start in range(0, n, 10_000):  # in chunks: Python's own memory stays flat
            c.apply([("ADDED", "ns", f"o{i:08d}", i + 1, {"app": "web"}, b"p" * 200) for i in range(start, start + 10_000)])

    def empty(c: berth.Cache, n: int) -> None:
        for start in range(0, n, 10_000):
            c.apply([("DELETED", "ns", f"o{i:08d}", 0) for i in range(start, start + 10_000)])

    def fill_and_drop(n: int) -> tuple[float, float]:
        c = berth.Cache(tombstone_limit=1000)
        fill(c, n)
        grown = rss_mib() - before
        if how == "close":
            c.close()
        else:
            empty(c, n)
            assert c.stats().objects == 0
        gc.collect()
        left = rss_mib() - before
        c.close()
        return grown, left

    before = rss_mib()
    fill_and_drop(20_000)  # once-per-process setup before the baseline
    before = rss_mib()
    grown, left = fill_and_drop(200_000)
    assert grown > 50, grown  # the cache took memory worth measuring
    assert left < grown / 10, (before, grown, left)


def test_no_python_objects_leak_on_any_path(synced):
    import tracemalloc

    # Multi-character strings: CPython shares its one-character strings, so
    # a leaked reference to one would not show.
    labels = {"app": "web", "tier": "backend"}
    synced.replace([("ns", f"o{i}", i + 1, labels, b"x" * 10) for i in range(10)], 100)
    sel = berth.Selector("app=web")

    def work(n: int) -> None:
        for _ in range(n):
            lst = synced.list("ns", sel)
            for o in lst:
                (o.name, o.namespace, o.labels, o.resource_version, bytes(o.payload), repr(o))
            (lst[1:5], list(iter(lst)), repr(lst), synced.get("ns", "o1"), synced.stats())
            (sel.matches({"app": "web"}), str(sel), repr(sel))
            synced.upsert("ns", "z", 5, {"k": "v"}, b"p")
            synced.apply([("ADDED", "ns", "y", 6, {"k": "v"}, b"q"), berth.Event("DELETED", "ns", "w", 7)])
            synced.replace(lst, 100)
            for bad in (lambda: synced.list("ns", "a in ("), lambda: synced.upsert("ns", "", 5),
                        lambda: synced.upsert("ns", "a", 5, {"k": 1}), lambda: synced.apply([("ADDED", "ns", "")])):
                try:
                    bad()
                except (berth.Error, TypeError):
                    pass

    work(50)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        work(2000)
        gc.collect()
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    grown = sum(d.size_diff for d in after.compare_to(before, "filename"))
    assert grown < 20_000  # one leaked object per iteration would be 100 KB+


# --------------------------------------------------------------------------
# Container protocol
# --------------------------------------------------------------------------


def test_len_counts_objects_and_in_finds_by_namespace_and_name(cache):
    assert len(cache) == 0  # before the sync too
    cache.upsert("ns", "early", 3)
    assert len(cache) == 1
    with pytest.raises(berth.NotSyncedError):
        ("ns", "early") in cache  # noqa: B015 - as get() before the sync
    cache.replace([("ns", "a", 5), ("ns", "b", 6), ("other", "a", 7)], 10)
    assert len(cache) == 3  # "early" was older than the relist's version, and not in it
    assert ("ns", "a") in cache and ("other", "a") in cache
    assert ("ns", "zz") not in cache and ("nope", "a") not in cache
    cache.delete("ns", "a", 11)
    assert ("ns", "a") not in cache and len(cache) == 2
    for bad in ("ns/a", ("ns",), ("ns", "a", "x"), ["ns", "a"], None):
        with pytest.raises(TypeError):
            bad in cache  # noqa: B015
    with pytest.raises(TypeError):
        ("ns", 5) in cache  # noqa: B015
    with pytest.raises(berth.InvalidNameError):
        ("ns", "") in cache  # noqa: B015
    cache.close()
    with pytest.raises(berth.ClosedError):
        len(cache)
    with pytest.raises(berth.ClosedError):
        ("ns", "b") in cache  # noqa: B015
