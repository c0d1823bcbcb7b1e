"""Bad input, the exception hierarchy, and the closed-engine contract."""

from __future__ import annotations

import pickle
import re

import pytest
from conftest import POOL

import berth

# Every Engine method with arguments that are valid on a pool holding key
# ("ns", "a"); `pool` is substituted per test.
CALLS = {
    "add": lambda e, pool: e.add(pool, "ns", "a", "n1", True),
    "update": lambda e, pool: e.update(pool, "ns", "a", "n1", True),
    "add_batch": lambda e, pool: e.add_batch(pool, [("ns", "a", "n1", True)]),
    "remove": lambda e, pool: e.remove(pool, "ns", "a"),
    "remove_pool": lambda e, pool: e.remove_pool(pool),
    "pop_fifo": lambda e, pool: e.pop_fifo(pool),
    "pop_spread": lambda e, pool: e.pop_spread(pool),
    "put_back": lambda e, pool: e.put_back(pool, berth.PoolKey("ns", "a", token=1)),
    "stats": lambda e, pool: e.stats(pool),
    "snapshot": lambda e, pool: e.snapshot(pool),
    "node_stats": lambda e, pool: e.node_stats(pool),
}


# --------------------------------------------------------------------------
# Names: limits are in UTF-8 bytes, checked by Berth
# --------------------------------------------------------------------------


@pytest.mark.parametrize("method", CALLS)
def test_empty_pool_name_is_an_invalid_name(engine, method):
    with pytest.raises(berth.InvalidNameError) as info:
        CALLS[method](engine, "")
    assert info.value.status == berth.Status.ERR_INVALID_NAME


@pytest.mark.parametrize("method", CALLS)
def test_pool_name_over_512_bytes_is_an_invalid_name(engine, method):
    with pytest.raises(berth.InvalidNameError):
        CALLS[method](engine, "p" * 513)


def test_pool_name_of_exactly_512_bytes_is_accepted(engine):
    assert engine.add("p" * 512, "ns", "a")
    assert engine.stats("p" * 512).keys == 1


@pytest.mark.parametrize(
    "field, limit",
    [("namespace", berth.MAX_NAMESPACE_LEN), ("name", berth.MAX_NAME_LEN), ("node", berth.MAX_NODE_LEN)],
)
def test_key_fields_up_to_their_limit_are_accepted_and_over_it_rejected(engine, field, limit):
    assert (berth.MAX_NAMESPACE_LEN, berth.MAX_NAME_LEN, berth.MAX_NODE_LEN) == (63, 253, 253)
    ok = {"pool": POOL, "namespace": "ns", "name": "a", "node": "n1"}
    engine.add(**{**ok, field: "x" * limit})
    with pytest.raises(berth.InvalidNameError):
        engine.add(**{**ok, "name": "b", field: "y" * (limit + 1)})
    assert engine.stats(POOL).keys == 1


def test_name_limit_counts_utf8_bytes_not_characters(engine):
    two_byte = "é"  # 2 bytes in UTF-8
    engine.add(POOL, "ns", two_byte * (berth.MAX_NAME_LEN // 2))  # 252 bytes
    with pytest.raises(berth.InvalidNameError):
        engine.add(POOL, "ns", two_byte * (berth.MAX_NAME_LEN // 2 + 1))  # 254 bytes, 127 chars
    with pytest.raises(berth.InvalidNameError):
        engine.add(POOL, "é" * 32, "a")  # 64 bytes of namespace


def test_empty_key_name_is_an_invalid_name(engine):
    with pytest.raises(berth.InvalidNameError):
        engine.add(POOL, "ns", "")
    with pytest.raises(berth.InvalidNameError):
        engine.remove(POOL, "ns", "")


@pytest.mark.parametrize("field", ["pool", "namespace", "name", "node"])
def test_nul_in_a_name_is_an_invalid_name(engine, field):
    args = {"pool": POOL, "namespace": "ns", "name": "a", "node": "n1"}
    args[field] = "bad\x00name"
    with pytest.raises(berth.InvalidNameError):
        engine.add(**args)


@pytest.mark.parametrize("field", ["pool", "namespace", "name", "node"])
def test_lone_surrogate_is_an_invalid_name(engine, field):
    args = {"pool": POOL, "namespace": "ns", "name": "a", "node": "n1"}
    args[field] = "bad\ud800"
    with pytest.raises(berth.InvalidNameError) as info:
        engine.add(**args)
    assert field in info.value.message
    assert info.value.status == berth.Status.ERR_INVALID_NAME


def test_lone_surrogate_in_put_back_key_is_an_invalid_name(engine):
    engine.add(POOL, "ns", "a")
    with pytest.raises(berth.InvalidNameError):
        engine.put_back(POOL, berth.PoolKey("ns", "\udcff", token=1))


def test_failed_add_changes_nothing(engine):
    engine.add(POOL, "ns", "a", "n1")
    before = engine.snapshot(POOL)
    for bad in ({"name": ""}, {"node": "x" * 300}, {"namespace": "\x00"}):
        with pytest.raises(berth.InvalidNameError):
            engine.add(**{"pool": POOL, "namespace": "ns", "name": "a", "node": "n2", **bad})
    assert engine.snapshot(POOL) == before


# --------------------------------------------------------------------------
# Wrong types
# --------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [5, None, b"bytes", 1.5, ["a"]], ids=repr)
@pytest.mark.parametrize("field", ["pool", "namespace", "name", "node"])
def test_non_str_names_raise_type_error(engine, field, bad):
    args = {"pool": POOL, "namespace": "ns", "name": "a", "node": "n1"}
    args[field] = bad
    with pytest.raises(TypeError, match=field):
        engine.add(**args)


@pytest.mark.parametrize("bad", [1, 0, None, "yes"], ids=repr)
def test_non_bool_ready_raises_type_error(engine, bad):
    with pytest.raises(TypeError, match="ready"):
        engine.add(POOL, "ns", "a", "n1", bad)
    with pytest.raises(TypeError, match="ready"):
        engine.update(POOL, "ns", "a", "n1", bad)


@pytest.mark.parametrize("field", ["pool", "namespace", "name", "node"])
def test_update_checks_names_like_add(engine, field):
    engine.add(POOL, "ns", "a", "n1")
    args = {"pool": POOL, "namespace": "ns", "name": "a", "node": "n1"}
    with pytest.raises(TypeError, match=field):
        engine.update(**{**args, field: 7})
    with pytest.raises(berth.InvalidNameError):
        engine.update(**{**args, field: "x\x00"})


@pytest.mark.parametrize("method", [m for m in CALLS if m not in ("add",)])
def test_non_str_pool_raises_type_error(engine, method):
    with pytest.raises(TypeError):
        CALLS[method](engine, 123)


@pytest.mark.parametrize(
    "bad",
    [("ns", "a", "n1", True), None, "key", berth.PoolKey("ns", 7, token=1)],  # type: ignore[arg-type]
    ids=["plain tuple", "None", "str", "int name"],
)
def test_put_back_of_a_non_pool_key_raises_type_error(engine, bad):
    engine.add(POOL, "ns", "a")
    with pytest.raises(TypeError):
        engine.put_back(POOL, bad)


@pytest.mark.parametrize("token", [-1, 2**64], ids=["negative", "too big"])
def test_put_back_with_token_out_of_uint64_range_is_an_invalid_argument(engine, token):
    engine.add(POOL, "ns", "a")
    with pytest.raises(berth.InvalidArgumentError):
        engine.put_back(POOL, berth.PoolKey("ns", "a", token=token))


def test_put_back_with_non_int_token_raises_type_error(engine):
    engine.add(POOL, "ns", "a")
    with pytest.raises(TypeError):
        engine.put_back(POOL, berth.PoolKey("ns", "a", token="1"))  # type: ignore[arg-type]


def test_add_batch_of_a_non_iterable_raises_type_error(engine):
    with pytest.raises(TypeError):
        engine.add_batch(POOL, 42)  # type: ignore[arg-type]


def test_missing_arguments_raise_type_error(engine):
    with pytest.raises(TypeError, match="name"):
        engine.add(POOL, "ns")  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="pool"):
        engine.pop_spread()  # type: ignore[call-arg]


def test_bad_argument_passing_raises_type_error(engine):
    with pytest.raises(TypeError, match="at most"):
        engine.add(POOL, "ns", "a", "n1", True, "extra")  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="unexpected keyword argument 'nod'"):
        engine.add(POOL, "ns", "a", nod="n1")  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="multiple values for argument 'name'"):
        engine.add(POOL, "ns", "a", name="b")  # type: ignore[misc]
    assert engine.add(ready=False, name="a", namespace="ns", pool=POOL) is True
    assert engine.snapshot(pool=POOL)[0].ready is False


def test_engine_methods_refuse_other_objects_as_self():
    with pytest.raises(TypeError):
        berth.Engine.add(object(), POOL, "ns", "a")  # type: ignore[arg-type]


def test_engine_without_init_raises_instead_of_crashing():
    e = berth.Engine.__new__(berth.Engine)
    with pytest.raises(TypeError):
        e.add(POOL, "ns", "a")


def test_engine_cannot_be_subclassed():
    with pytest.raises(TypeError):
        type("MyEngine", (berth.Engine,), {})


# --------------------------------------------------------------------------
# The exception hierarchy
# --------------------------------------------------------------------------


def test_error_classes_form_a_hierarchy_under_berth_error():
    for cls in (
        berth.InvalidArgumentError,
        berth.InvalidNameError,
        berth.NotFoundError,
        berth.BadBufferError,
        berth.OutOfMemoryError,
        berth.InternalError,
        berth.NotSyncedError,
        berth.BadSelectorError,
        berth.TimeoutError,
        berth.BadRegionError,
        berth.ClosedError,
    ):
        assert issubclass(cls, berth.Error)
    assert issubclass(berth.Error, Exception)
    assert berth.OutOfMemoryError is not MemoryError
    assert not issubclass(berth.OutOfMemoryError, MemoryError)


def test_library_errors_carry_status_name_and_message(engine):
    with pytest.raises(berth.Error) as info:
        engine.stats("no/such-pool")
    err = info.value
    assert type(err) is berth.NotFoundError
    assert err.status == 4 == berth.Status.ERR_NOT_FOUND
    assert err.status_name == "BERTH_ERR_NOT_FOUND"
    assert isinstance(err.message, str) and err.message  # berth_last_error's text
    assert err.message in str(err) and "BERTH_ERR_NOT_FOUND" in str(err)


def test_error_message_comes_from_the_failing_call(engine):
    engine.add(POOL, "ns", "a")
    with pytest.raises(berth.InvalidNameError) as bad_name:
        engine.add(POOL, "ns", "")
    with pytest.raises(berth.NotFoundError) as not_found:
        engine.stats("missing")
    assert bad_name.value.message != not_found.value.message


@pytest.mark.parametrize(
    "cls, status, name",
    [
        (berth.NotSyncedError, 8, "BERTH_ERR_NOT_SYNCED"),
        (berth.BadSelectorError, 9, "BERTH_ERR_BAD_SELECTOR"),
        (berth.TimeoutError, 10, "BERTH_ERR_TIMEOUT"),
        (berth.BadRegionError, 11, "BERTH_ERR_BAD_REGION"),
    ],
)
def test_new_error_classes_default_to_their_status(cls, status, name):
    err = cls("detail")
    assert (err.status, err.status_name) == (status, name)
    assert berth.Status(status).c_name == name
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is cls and back.status == status


def test_status_codes_match_the_library():
    from berth import _berth

    assert _berth._STATUS_NAMES == {s.value: s.c_name for s in berth.Status}


def test_errors_pickle_with_their_attributes():
    err = berth.NotFoundError("no pool", 4, "BERTH_ERR_NOT_FOUND")
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is berth.NotFoundError
    assert (back.message, back.status, back.status_name) == ("no pool", 4, "BERTH_ERR_NOT_FOUND")


def test_error_defaults_its_status_from_its_class():
    err = berth.InvalidNameError("bad")
    assert (err.status, err.status_name) == (3, "BERTH_ERR_INVALID_NAME")


# --------------------------------------------------------------------------
# Closing
# --------------------------------------------------------------------------


@pytest.mark.parametrize("method", CALLS)
def test_every_method_after_close_raises_closed_error(method):
    e = berth.Engine()
    e.add(POOL, "ns", "a")
    e.close()
    with pytest.raises(berth.ClosedError) as info:
        CALLS[method](e, POOL)
    # What the library answers for a freed handle, and catchable as such.
    assert info.value.status == berth.Status.ERR_BAD_HANDLE
    assert isinstance(info.value, berth.BadHandleError)
    assert info.value.status_name == "BERTH_ERR_BAD_HANDLE"


def test_bad_arguments_after_close_still_raise_cleanly():
    e = berth.Engine()
    e.close()
    with pytest.raises((TypeError, berth.ClosedError)):
        e.add(1, 2, 3)  # type: ignore[arg-type]
    with pytest.raises((berth.InvalidNameError, berth.ClosedError)):
        e.add("", "", "")


def test_close_is_idempotent():
    e = berth.Engine()
    assert e.closed is False
    e.close()
    e.close()
    assert e.closed is True


def test_context_manager_closes_the_engine_and_does_not_swallow_errors():
    with pytest.raises(KeyError):
        with berth.Engine() as e:
            assert isinstance(e, berth.Engine)
            e.add(POOL, "ns", "a")
            raise KeyError("x")
    assert e.closed
    with pytest.raises(berth.ClosedError):
        e.pop_fifo(POOL)


def test_engine_repr_shows_state():
    e = berth.Engine()
    assert re.fullmatch(r"<berth\.Engine open>", repr(e))
    e.close()
    assert re.fullmatch(r"<berth\.Engine closed>", repr(e))


def test_dropping_an_open_engine_frees_it():
    import gc
    import resource

    def fill_and_drop() -> None:
        e = berth.Engine()
        e.add_batch(POOL, [("ns", f"key-{i:08d}" + "x" * 100, f"node-{i % 50}", True) for i in range(20_000)])
        del e

    fill_and_drop()
    gc.collect()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    for _ in range(30):  # ~30 x 3+ MiB if engines leaked
        fill_and_drop()
    gc.collect()
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mib < 40


def test_timeout_error_is_also_the_builtin_timeout_error():
    import builtins
    import errno

    err = berth.TimeoutError("no permits within 5 ns", 10, "BERTH_ERR_TIMEOUT")
    assert isinstance(err, builtins.TimeoutError) and isinstance(err, OSError)
    assert berth.TimeoutError is not builtins.TimeoutError
    # Error's attributes and args survive OSError's own argument handling.
    assert err.args == ("no permits within 5 ns", 10, "BERTH_ERR_TIMEOUT")
    assert (err.message, err.status, err.status_name) == ("no permits within 5 ns", 10, "BERTH_ERR_TIMEOUT")
    assert err.errno == errno.ETIMEDOUT and err.strerror == err.message
    assert str(err) == "no permits within 5 ns [BERTH_ERR_TIMEOUT]"
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is berth.TimeoutError
    assert (back.args, back.message, back.status, back.errno) == (err.args, err.message, 10, errno.ETIMEDOUT)


def test_timeout_error_does_not_shadow_the_builtin_on_star_import():
    assert "TimeoutError" not in berth.__all__
    namespace: dict[str, object] = {}
    exec("from berth import *", namespace)
    assert "TimeoutError" not in namespace
