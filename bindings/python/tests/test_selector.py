"""berth.Selector: parsing, the canonical string, matching, bad selectors, lifetime."""

from __future__ import annotations

import gc
import re
import resource
from collections.abc import Iterator, Mapping
from types import MappingProxyType

import pytest

import berth

# --------------------------------------------------------------------------
# Every example of the Kubernetes labels documentation
# (concepts/overview/working-with-objects/labels): the selector as written
# there, the canonical form Kubernetes prints for it, label sets it matches,
# and label sets it does not match.
# --------------------------------------------------------------------------

K8S_DOC_EXAMPLES = [
    (
        "environment = production",
        "environment=production",
        [{"environment": "production"}, {"environment": "production", "tier": "frontend"}],
        [{}, {"environment": "qa"}, {"tier": "production"}, {"environment": "Production"}],
    ),
    (
        "tier != frontend",
        "tier!=frontend",
        # != also selects objects without the key, as in Kubernetes.
        [{}, {"tier": "backend"}, {"environment": "frontend"}],
        [{"tier": "frontend"}],
    ),
    (
        "environment=production,tier!=frontend",
        "environment=production,tier!=frontend",
        [{"environment": "production"}, {"environment": "production", "tier": "backend"}],
        [{"environment": "production", "tier": "frontend"}, {"tier": "backend"}, {}],
    ),
    (
        "environment in (production, qa)",
        "environment in (production,qa)",
        [{"environment": "production"}, {"environment": "qa"}],
        [{}, {"environment": "dev"}, {"tier": "qa"}],
    ),
    (
        "tier notin (frontend, backend)",
        "tier notin (backend,frontend)",
        [{}, {"tier": "cache"}, {"environment": "frontend"}],
        [{"tier": "frontend"}, {"tier": "backend"}],
    ),
    (
        "partition",
        "partition",
        [{"partition": ""}, {"partition": "customerA"}],
        [{}, {"environment": "qa"}],
    ),
    (
        "!partition",
        "!partition",
        [{}, {"environment": "qa"}],
        [{"partition": ""}, {"partition": "customerA"}],
    ),
    (
        "partition in (customerA, customerB),environment!=qa",
        "environment!=qa,partition in (customerA,customerB)",
        [{"partition": "customerA"}, {"partition": "customerB", "environment": "production"}],
        [{"partition": "customerA", "environment": "qa"}, {"partition": "customerC"}, {}],
    ),
]


@pytest.mark.parametrize("text, canonical, yes, no", K8S_DOC_EXAMPLES, ids=[e[0] for e in K8S_DOC_EXAMPLES])
def test_kubernetes_documentation_examples(text, canonical, yes, no):
    with berth.Selector(text) as sel:
        assert str(sel) == canonical
        for labels in yes:
            assert sel.matches(labels) is True, labels
        for labels in no:
            assert sel.matches(labels) is False, labels


@pytest.mark.parametrize("text, canonical, yes, no", K8S_DOC_EXAMPLES, ids=[e[0] for e in K8S_DOC_EXAMPLES])
def test_canonical_form_parses_to_the_same_selector(text, canonical, yes, no):
    again = berth.Selector(str(berth.Selector(text)))
    assert str(again) == canonical
    assert [again.matches(x) for x in yes + no] == [True] * len(yes) + [False] * len(no)


@pytest.mark.parametrize(
    "text, canonical",
    [
        ("", ""),
        ("a==b", "a==b"),
        ("x>5", "x>5"),
        ("x<5", "x<5"),
        ("b=1,a=2", "a=2,b=1"),
        ("k in (z,y,x)", "k in (x,y,z)"),
        ("example.com/app=web", "example.com/app=web"),
        ("a=", "a="),
    ],
)
def test_more_canonical_forms(text, canonical):
    assert str(berth.Selector(text)) == canonical


def test_empty_selector_matches_everything():
    sel = berth.Selector("")
    assert sel.matches({}) and sel.matches({"a": "b"})


def test_greater_and_less_than_compare_integers():
    gt, lt = berth.Selector("replicas>5"), berth.Selector("replicas<5")
    assert gt.matches({"replicas": "6"}) and not gt.matches({"replicas": "5"})
    assert lt.matches({"replicas": "4"}) and not lt.matches({"replicas": "5"})
    assert not gt.matches({"replicas": "many"}) and not gt.matches({})


def test_matches_takes_any_mapping():
    class Labels(Mapping[str, str]):
        def __init__(self, d: dict[str, str]) -> None:
            self._d = d

        def __getitem__(self, k: str) -> str:
            return self._d[k]

        def __iter__(self) -> Iterator[str]:
            return iter(self._d)

        def __len__(self) -> int:
            return len(self._d)

    sel = berth.Selector("app=web,tier")
    assert sel.matches(MappingProxyType({"app": "web", "tier": "x"}))
    assert sel.matches(Labels({"app": "web", "tier": "x"}))
    assert not sel.matches(Labels({"app": "web"}))


def test_matches_does_not_validate_labels():
    # Label sets are compared as Kubernetes compares them, valid or not.
    assert berth.Selector("a!=b").matches({"not a valid key!": "é" * 100})
    assert not berth.Selector("a").matches({"A": "x"})


@pytest.mark.parametrize(
    "bad",
    [["a", "b"], "a=b", 5, {"a": 1}, {1: "a"}, {"a": None}, {"a": b"b"}],
    ids=["list", "str", "int", "int value", "int key", "None value", "bytes value"],
)
def test_matches_rejects_non_mappings_of_str(bad):
    with pytest.raises(TypeError, match="labels"):
        berth.Selector("a").matches(bad)


def test_matches_argument_passing():
    sel = berth.Selector("a")
    assert sel.matches(labels={"a": ""})
    with pytest.raises(TypeError):
        sel.matches()  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        sel.matches({}, {})  # type: ignore[call-arg]


# --------------------------------------------------------------------------
# Bad selectors
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, offset",
    [
        ("a=b,", 4),  # trailing comma
        ("a in (x y)", 8),  # values not separated by a comma
        ("-a=b", 0),  # invalid key
        ("a in (x", None),
        ("a=b=c", None),
        ("a/b/c=d", None),
        ("a=" + "v" * 64, None),  # value over 63
        ("x>y", None),
        (",", 0),
    ],
)
def test_bad_selectors_raise_bad_selector_error_at_a_byte(text, offset):
    with pytest.raises(berth.BadSelectorError) as info:
        berth.Selector(text)
    err = info.value
    assert err.status == berth.Status.ERR_BAD_SELECTOR == 9
    assert err.status_name == "BERTH_ERR_BAD_SELECTOR"
    m = re.search(r"at byte (\d+)", err.message)
    assert m, err.message
    if offset is not None:
        assert int(m.group(1)) == offset, err.message


def test_bad_selector_error_is_a_berth_error():
    assert issubclass(berth.BadSelectorError, berth.Error)
    with pytest.raises(berth.Error):
        berth.Selector("a in (x y)")


def test_selector_text_must_be_a_str():
    for bad in (None, b"a=b", 5):
        with pytest.raises(TypeError, match="text"):
            berth.Selector(bad)  # type: ignore[arg-type]


def test_selector_text_with_lone_surrogate_is_a_bad_selector():
    with pytest.raises(berth.BadSelectorError):
        berth.Selector("a=\ud800")


def test_selector_text_with_nul_is_a_bad_selector():
    with pytest.raises(berth.BadSelectorError):
        berth.Selector("a=b\x00")


# --------------------------------------------------------------------------
# Lifetime
# --------------------------------------------------------------------------


def test_selector_repr():
    sel = berth.Selector("tier != frontend")
    assert repr(sel) == "berth.Selector('tier!=frontend')"
    sel.close()
    assert repr(sel) == "<berth.Selector closed>"


def test_closed_selector_raises_closed_error():
    sel = berth.Selector("a=b")
    assert sel.closed is False
    sel.close()
    sel.close()  # idempotent
    assert sel.closed is True
    with pytest.raises(berth.ClosedError, match="selector"):
        sel.matches({"a": "b"})
    with pytest.raises(berth.ClosedError):
        str(sel)


def test_selector_context_manager_closes_and_does_not_swallow_errors():
    with pytest.raises(KeyError):
        with berth.Selector("a") as sel:
            assert isinstance(sel, berth.Selector)
            raise KeyError("x")
    assert sel.closed


def test_selector_cannot_be_subclassed():
    with pytest.raises(TypeError):
        type("MySelector", (berth.Selector,), {})


def test_selector_without_init_raises_instead_of_crashing():
    sel = berth.Selector.__new__(berth.Selector)
    with pytest.raises(TypeError):
        sel.matches({})


def test_dropped_selectors_are_freed():
    # A selector with 200 values holds a few KiB inside Berth; 3000 leaked
    # ones would grow the process by well over 10 MiB.
    text = "k in (" + ",".join(f"value-{i:04d}-{'x' * 40}" for i in range(200)) + ")"

    def churn(n: int) -> None:
        for _ in range(n):
            berth.Selector(text).matches({"k": "value-0001"})

    churn(300)
    gc.collect()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    churn(3000)
    gc.collect()
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mib < 10


# --------------------------------------------------------------------------
# Equality and hashing, by the canonical form
# --------------------------------------------------------------------------


def test_equal_selectors_are_those_with_one_canonical_form_and_hash_alike():
    a = berth.Selector("tier in (b, a), app=web,!gone")
    b = berth.Selector("!gone,app=web,tier in (a,b)")
    c = berth.Selector("app=web")
    assert a == b and hash(a) == hash(b)
    assert a != c and not (a == c)
    assert berth.Selector(str(a)) == a
    assert a == a and a != "app=web" and a != None  # noqa: E711 - not a Selector: not equal
    assert len({a, b, c}) == 2
    assert {a: 1}[b] == 1
    assert berth.Selector("") == berth.Selector("")


def test_closed_selectors_compare_by_the_form_they_had():
    a, b = berth.Selector("x=1"), berth.Selector("x = 1")
    h = hash(a)  # computes a's form
    a.close()
    assert a == b and b == a and hash(a) == h  # a's form was computed before close()
    b.close()
    assert a == b  # both known
    never = berth.Selector("x=1")
    never.close()
    assert never == never and never != a  # its form was never computed: only itself
    with pytest.raises(berth.ClosedError):
        hash(never)
