"""The installed package: ABI check, shipped library, type stubs."""

from __future__ import annotations

import ast
import inspect
import pathlib
import re

import pytest

import berth
from berth import _berth

PKG_DIR = pathlib.Path(berth.__file__).parent


def test_loaded_library_abi_major_matches_the_header():
    loaded = berth.abi_version()
    assert isinstance(loaded, int)
    assert loaded // 10000 == berth.ABI_VERSION // 10000
    assert loaded >= berth.ABI_VERSION


def test_libberth_is_loaded_from_the_package_directory():
    maps = pathlib.Path("/proc/self/maps").read_text()
    libs = {line.split()[-1] for line in maps.splitlines() if "libberth" in line}
    assert libs, "libberth is not mapped"
    assert all(pathlib.Path(p).parent == PKG_DIR for p in libs), libs


def test_package_ships_type_stubs_and_py_typed():
    assert (PKG_DIR / "py.typed").is_file()
    assert (PKG_DIR / "_berth.pyi").is_file()


def _stub_classes() -> dict[str, ast.ClassDef]:
    tree = ast.parse((PKG_DIR / "_berth.pyi").read_text())
    return {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}


NATIVE_CLASSES = ["Engine", "Cache", "Selector", "ObjectList", "ObjectView", "Limiter", "SharedLimiter", "Bucket"]


@pytest.mark.parametrize("cls_name", NATIVE_CLASSES)
def test_stub_declares_every_public_member_with_a_docstring(cls_name):
    stub = _stub_classes()[cls_name]
    declared = {n.name: n for n in stub.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    public = {n for n in dir(getattr(berth, cls_name)) if not n.startswith("_")}
    assert public, cls_name
    assert public <= set(declared), public - set(declared)
    for name in public:
        assert ast.get_docstring(declared[name]), f"{cls_name}.{name} has no docstring in the stub"


def test_stub_marks_final_exactly_the_classes_that_cannot_be_subclassed():
    # stubtest checks this too, but its allowlist (pybind11's metaclass, see
    # bindings/python/stubtest-allowlist.txt) hides it for those classes.
    py_tpflags_basetype = 1 << 10
    for name, stub in _stub_classes().items():
        runtime = getattr(_berth, name, None)
        if not isinstance(runtime, type):
            continue
        final = any(isinstance(d, ast.Name) and d.id == "final" for d in stub.decorator_list)
        subclassable = bool(runtime.__flags__ & py_tpflags_basetype)
        assert final == (not subclassable), f"{name}: @final in the stub {final}, subclassable {subclassable}"


def test_stub_declares_every_public_module_name():
    tree = ast.parse((PKG_DIR / "_berth.pyi").read_text())
    declared = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    declared |= {n.target.id for n in tree.body if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)}
    native = {n for n in dir(_berth) if not n.startswith("__")}
    assert native <= declared, native - declared


def _native_params(method, static: bool = False) -> list[tuple[str, object]]:
    """The parameters after self (all of them for a static method)."""
    skip = 0 if static else 1
    try:
        sig = inspect.signature(method)
    except ValueError:
        # A pybind11-bound method: its docstring starts with the signature,
        # e.g. "close(self: berth.Engine) -> None" (no defaults used there).
        first = (method.__doc__ or "").splitlines()[0]
        inner = first[first.index("(") + 1 : first.rindex(")")]
        names = [p.split(":")[0].strip() for p in inner.split(",") if p.strip()]
        return [(n, inspect.Parameter.empty) for n in names[skip:]]
    return [(p.name, p.default) for p in sig.parameters.values()][skip:]


@pytest.mark.parametrize(
    "cls_name, methods",
    [
        ("Engine", 13),
        ("Cache", 10),
        ("Selector", 2),
        ("Limiter", 13),
        ("SharedLimiter", 15),
        ("Bucket", 9),
        ("_Notifier", 2),
    ],
)
def test_stub_signatures_match_the_native_methods(cls_name, methods):
    stub, cls = _stub_classes()[cls_name], getattr(_berth, cls_name)
    checked = 0
    for node in stub.body:
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) or node.name.startswith("__"):
            continue
        attr = inspect.getattr_static(cls, node.name)
        if isinstance(attr, property):
            continue
        static = isinstance(attr, staticmethod)
        decorators = [d.id for d in node.decorator_list if isinstance(d, ast.Name)]
        assert static == ("staticmethod" in decorators), node.name
        native_params = _native_params(getattr(cls, node.name), static)
        args = node.args.args[0 if static else 1 :]
        defaults = [inspect.Parameter.empty] * (len(args) - len(node.args.defaults)) + [
            ast.literal_eval(d) for d in node.args.defaults
        ]
        stub_params = [(a.arg, d) for a, d in zip(args, defaults)]
        assert native_params == stub_params, node.name
        checked += 1
    assert checked == methods


def test_stub_declares_the_async_and_context_manager_methods():
    for cls_name, names in (
        ("Limiter", ["__aenter__", "__aexit__"]),
        ("SharedLimiter", ["__aenter__", "__aexit__"]),
        ("Bucket", ["wait"]),
        ("Cache", ["replace_async"]),
    ):
        stub = _stub_classes()[cls_name]
        for name in names:
            node = next(n for n in stub.body if getattr(n, "name", None) == name)
            assert isinstance(node, ast.AsyncFunctionDef), (cls_name, name)
            assert inspect.iscoroutinefunction(getattr(getattr(berth, cls_name), name)) or name == "__aenter__"


@pytest.mark.parametrize("cls_name", ["Cache", "Selector", "Limiter", "SharedLimiter", "Bucket"])
def test_stub_constructor_signatures_match(cls_name):
    init = next(n for n in _stub_classes()[cls_name].body if isinstance(n, ast.FunctionDef) and n.name == "__init__")
    args = init.args.args[1:]
    defaults = [None] * (len(args) - len(init.args.defaults)) + [ast.literal_eval(d) for d in init.args.defaults]
    # pybind11 writes the constructor signature first in __init__'s docstring.
    doc = getattr(berth, cls_name).__init__.__doc__.splitlines()[0]
    for a, d in zip(args, defaults):
        assert re.search(rf"\b{a.arg}: object" + (rf" = {d!r}" if d is not None else ""), doc), (a.arg, doc)


def test_public_names_are_exported():
    for name in berth.__all__:
        assert hasattr(berth, name), name
    for name in NATIVE_CLASSES:
        assert getattr(berth, name).__module__ == "berth", name
        assert name in berth.__all__


REPO = pathlib.Path(__file__).resolve().parents[3]


def test_version_is_the_header_version():
    header = REPO / "capi" / "berth.h"
    if not header.is_file():
        pytest.skip("run from a source checkout")
    parts = dict(re.findall(r"(?m)^#define BERTH_ABI_VERSION_(MAJOR|MINOR|PATCH) (\d+)", header.read_text()))
    assert berth.__version__ == f"{parts['MAJOR']}.{parts['MINOR']}.{parts['PATCH']}"
    major, minor, patch = (int(p) for p in berth.__version__.split("."))
    assert berth.ABI_VERSION == major * 10000 + minor * 100 + patch


def test_version_is_the_distribution_version():
    import importlib.metadata

    # The distribution installed beside the imported package (not whichever
    # "berth" comes first on sys.path).
    dists = [d for d in importlib.metadata.distributions(path=[str(PKG_DIR.parent)]) if d.metadata["Name"] == "berth"]
    if not dists:
        pytest.skip(f"no berth distribution metadata beside {PKG_DIR}")
    assert [d.version for d in dists] == [berth.__version__]
