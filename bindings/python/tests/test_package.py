"""The installed package: ABI check, shipped library, type stubs."""

from __future__ import annotations

import ast
import inspect
import pathlib

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


def test_stub_declares_every_public_engine_member_with_a_docstring():
    engine_stub = _stub_classes()["Engine"]
    declared = {
        n.name: n for n in engine_stub.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
    }
    public = {n for n in dir(berth.Engine) if not n.startswith("_")}
    assert public <= set(declared), public - set(declared)
    for name in public:
        assert ast.get_docstring(declared[name]), f"Engine.{name} has no docstring in the stub"


def test_stub_declares_every_public_module_function():
    tree = ast.parse((PKG_DIR / "_berth.pyi").read_text())
    declared = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    declared |= {t.id for n in tree.body if isinstance(n, ast.AnnAssign) for t in [n.target]}
    native = {n for n in dir(_berth) if not n.startswith("__")}
    assert native - {"Engine"} <= declared, native - declared


def _native_params(method) -> list[tuple[str, object]]:
    try:
        sig = inspect.signature(method)
    except ValueError:
        # A pybind11-bound method: its docstring starts with the signature,
        # e.g. "close(self: berth.Engine) -> None" (no defaults used there).
        first = (method.__doc__ or "").splitlines()[0]
        inner = first[first.index("(") + 1 : first.rindex(")")]
        names = [p.split(":")[0].strip() for p in inner.split(",") if p.strip()]
        return [(n, inspect.Parameter.empty) for n in names[1:]]
    return [(p.name, p.default) for p in sig.parameters.values()][1:]


def test_stub_signatures_match_the_native_methods():
    engine_stub = _stub_classes()["Engine"]
    checked = 0
    for node in engine_stub.body:
        if not isinstance(node, ast.FunctionDef) or node.name.startswith("__"):
            continue
        if isinstance(inspect.getattr_static(berth.Engine, node.name), property):
            continue
        native_params = _native_params(getattr(berth.Engine, node.name))
        args = node.args.args[1:]
        defaults = [inspect.Parameter.empty] * (len(args) - len(node.args.defaults)) + [
            ast.literal_eval(d) for d in node.args.defaults
        ]
        stub_params = [(a.arg, d) for a, d in zip(args, defaults)]
        assert native_params == stub_params, node.name
        checked += 1
    assert checked >= 10


def test_public_names_are_exported():
    for name in berth.__all__:
        assert hasattr(berth, name), name
    assert berth.Engine.__module__ == "berth"
