"""Every place that still spells a kernel's signature agrees with the kernel table (cnnkern/kernels/):
the Backend base class, each backend's methods, the numba and reference family modules, the C++ stub
cnnkern/_cpp.pyi (and the compiled module's names), the front door cnnkern.ops, the numba warm-up and the
front-door error table; for the int8 kernels (QUANT) their front door and every backend's functions. A
kernel added to the table and missed in one of them fails here, naming it."""

import ast
import importlib
import importlib.util
import inspect
import pathlib

import pytest

import cnnkern
from cnnkern import kernels, ops
from cnnkern.backends import base, cpp, cuda, numba, reference
from cnnkern.kernels import BASIC, FUSED, QUANT, QUANT_TABLE, REQUIRED, TABLE

ROOT = pathlib.Path(cnnkern.__file__).parent
BACKEND_CLASSES = {
    "base": base.Backend,
    "reference": reference.ReferenceBackend,
    "cpp": cpp.CppBackend,
    "numba": numba.NumbaBackend,
    "cuda": cuda.CudaBackend,
}
# the method-name endings of kernels: a public method so named that the table lacks is a kernel nobody
# declared
KERNEL_ENDINGS = ("_forward", "_backward", "_update", "_update_multi")


def _shape(sig):
    """(name, kind, default) of each parameter, self dropped: what a caller sees."""
    return [(p.name, p.kind, p.default) for p in sig.parameters.values() if p.name != "self"]


def test_table_is_consistent():
    assert len(TABLE) == len(BASIC) + len(FUSED), "a kernel name is declared twice"
    for kernel in TABLE.values():
        names = kernel.arg_names()
        assert len(set(names)) == len(names), f"{kernel.name}: an argument is declared twice"
        kernel.signature()  # raises for a positional argument without default after one with it
        kernel.front_signature()
        assert kernel.family in kernels.FAMILIES
        for name in kernel.inplace:
            assert name.split()[0] in names, f"{kernel.name}: in-place {name!r} is not an argument"
    assert base.KERNELS == tuple(k.name for k in BASIC)
    assert base.FUSED_KERNELS == tuple(k.name for k in FUSED)


@pytest.mark.parametrize("backend", sorted(BACKEND_CLASSES))
def test_backend_methods_have_the_table_signature(backend):
    cls = BACKEND_CLASSES[backend]
    wrong = {}
    for kernel in TABLE.values():
        got = _shape(inspect.signature(getattr(cls, kernel.name)))
        if got != _shape(kernel.signature()):
            wrong[kernel.name] = got
    assert not wrong, f"{backend}: methods whose signature differs from the table: {wrong}"


@pytest.mark.parametrize("backend", sorted(BACKEND_CLASSES))
def test_backends_declare_no_kernel_outside_the_table(backend):
    cls = BACKEND_CLASSES[backend]
    extra = [
        name
        for name in dir(cls)
        if not name.startswith("_") and name.endswith(KERNEL_ENDINGS) and name not in TABLE
    ]
    assert not extra, f"{backend} has kernel methods the table does not declare: {extra}"


def test_backend_docstrings_come_from_the_table():
    for kernel in TABLE.values():
        method = getattr(base.Backend, kernel.name)
        assert method.__doc__ == kernel.docstring(), kernel.name
        assert method.__qualname__ == f"Backend.{kernel.name}"


def test_unfused_kernels_are_missing_on_the_base_class():
    be = base.Backend()
    with pytest.raises(NotImplementedError, match="no kernel 'dense_forward'"):
        be.dense_forward(None, None)


@pytest.mark.parametrize("family", ["reference", "numba"])
def test_family_modules_define_each_kernel_in_table_order(family):
    """reference/<stem>.py: the Backend signature without self; numba/<stem>.py: the arguments
    positionally in table order (what the generated forwarding passes)."""
    wrong = {}
    for kernel in BASIC:
        module = importlib.import_module(f"cnnkern.backends.{family}.{kernel.family}")
        fn = getattr(module, kernel.name, None)
        if fn is None:
            wrong[kernel.name] = f"missing in {module.__name__}"
            continue
        sig = inspect.signature(fn)
        if family == "reference":
            ok = _shape(sig) == _shape(kernel.signature(self_arg=False))
        else:
            ok = list(sig.parameters) == list(kernel.arg_names())
        if not ok:
            wrong[kernel.name] = str(sig)
    assert not wrong, f"{family} kernel functions that differ from the table: {wrong}"


def _stub_functions():
    tree = ast.parse((ROOT / "_cpp.pyi").read_text())
    return {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}


def _binding_params(fn):
    """[(name, kind, default)] of a compiled _cpp function, from the signature pybind11 writes on the first
    line of its docstring (it names every argument, marks keyword-only ones after ``*`` and shows the
    defaults)."""
    node = ast.parse(f"def {fn.__doc__.splitlines()[0]}: ...").body[0]
    args = node.args
    defaults = [REQUIRED] * (len(args.args) - len(args.defaults)) + [
        ast.literal_eval(d) for d in args.defaults
    ]
    out = [(a.arg, "positional", d) for a, d in zip(args.args, defaults)]
    out += [
        (a.arg, "keyword", REQUIRED if d is None else ast.literal_eval(d))
        for a, d in zip(args.kwonlyargs, args.kw_defaults)
    ]
    return out


def test_cpp_stub_restates_no_kernel():
    """The kernels' signatures live in the table and in the bindings, checked below; the stub declares
    only the run-time settings (its __getattr__ types the kernels as the callables they are)."""
    assert [name for name in _stub_functions() if name in TABLE] == []
    assert "__getattr__" in _stub_functions()


def test_cpp_extension_matches_the_table():
    """Every unfused kernel, and each fused one the extension implements, is bound with the table's
    arguments: names, order, keyword-only after ``py::kw_only()``, defaults."""
    if cpp._cpp is None:
        pytest.skip(f"cnnkern._cpp is not built here: {cpp._IMPORT_ERROR}")
    assert not cpp.missing_kernels(), f"the built extension is stale: {cpp.missing_kernels()}"
    assert [k.name for k in QUANT if not hasattr(cpp._cpp, k.name)] == [], "an int8 kernel is not bound"
    wrong = {}
    for kernel in [*TABLE.values(), *QUANT]:
        fn = getattr(cpp._cpp, kernel.name, None)
        if fn is None:
            continue  # a fused kernel without C++: the backend composes it
        want = [(arg.name, "positional" if arg.positional else "keyword", arg.default) for arg in kernel.args]
        got = _binding_params(fn)
        if got != want:
            wrong[kernel.name] = got
    assert not wrong, f"_cpp bindings whose arguments differ from the table: {wrong}"


def test_a_missing_cpp_binding_fails_per_kernel():
    """A stale extension keeps the backend: only the kernel it lacks raises, naming itself and the fix."""
    kernel = TABLE["dense_forward"]
    method = cpp._unbound(kernel)
    assert _shape(inspect.signature(method)) == _shape(kernel.signature())
    with pytest.raises(NotImplementedError, match=r"'dense_forward'.*rebuild"):
        method(object(), None, None)


def test_front_door_matches_the_table():
    wrong = {}
    for kernel in TABLE.values():
        if not kernel.has_front_door:
            assert not hasattr(ops, kernel.name), f"{kernel.name} is declared without a front door"
            continue
        got = inspect.signature(getattr(ops, kernel.name))
        if _shape(got) != _shape(kernel.front_signature()):
            wrong[kernel.name] = str(got)
    assert not wrong, f"front-door functions whose signature differs from the table: {wrong}"
    assert sorted(ops.__all__) == sorted(k.name for k in TABLE.values() if k.has_front_door)


def test_recipe_kernels_fit_their_recipe_and_are_generated():
    """A kernel naming a recipe has its front door generated (ops/recipes.py), not written in ops/<stem>.py;
    the elementwise recipe takes floating arrays, then real-number settings with front-door defaults."""
    from cnnkern.ops import recipes

    for kernel in TABLE.values():
        if kernel.recipe is None:
            continue
        assert kernel.recipe in kernels.RECIPES, kernel.name
        assert kernel.has_front_door and kernel.front_args is None and kernel.fused is None, kernel.name
        if kernel.recipe == "elementwise":
            arrays = [arg.type for arg in kernel.args if arg.positional]
            assert arrays and set(arrays) == {"F32"}, kernel.name
            assert all(
                arg.type == "float" and arg.front is not REQUIRED for arg in kernel.args[len(arrays) :]
            )
            assert kernel.returns_type == "F32", kernel.name
        assert getattr(ops, kernel.name) is recipes.GENERATED[kernel.name]
        if importlib.util.find_spec(f"cnnkern.ops.{kernel.family}") is not None:
            module = importlib.import_module(f"cnnkern.ops.{kernel.family}")
            assert not hasattr(module, kernel.name), f"{kernel.name}: written in ops and generated"
    assert set(recipes.GENERATED) == {k.name for k in TABLE.values() if k.recipe is not None}


def test_elementwise_activation_pairs():
    """kernels.ELEMENTWISE_ACTIVATIONS: <a>_backward takes dy, then <a>_forward's arguments."""
    for act in kernels.ELEMENTWISE_ACTIVATIONS:
        forward, backward = TABLE[f"{act}_forward"], TABLE[f"{act}_backward"]
        assert backward.recipe == "elementwise"
        names = [(arg.name, arg.positional, arg.front) for arg in backward.args]
        assert names == [("dy", True, REQUIRED)] + [(a.name, a.positional, a.front) for a in forward.args], (
            act
        )


def test_cuda_launches_every_elementwise_kernel():
    """cuda/<stem>.py writes no launcher for an elementwise kernel: the generic one launches <stem>.cu's."""
    for kernel in TABLE.values():
        if kernel.recipe == "elementwise":
            method = getattr(cuda.CudaBackend, kernel.name)
            assert method is not getattr(base.Backend, kernel.name), kernel.name


def test_numba_warmup_covers_the_table():
    import numpy as np

    calls = numba._warmup_calls(object(), np.dtype("float32"))
    assert list(calls) == [k.name for k in BASIC] + list(numba.FUSED)
    assert set(numba.FUSED) <= set(TABLE)


def test_front_door_error_table_covers_every_front_door_kernel():
    from .test_frontdoor_errors import BAD

    front = [k.name for k in TABLE.values() if k.has_front_door]
    assert [name for name in front if name not in BAD] == []
    assert [name for name in BAD if name not in front] == []


def test_cuda_has_a_launcher_module_per_family_with_a_cu_file():
    """The stem rule: backends/cuda/<stem>.py beside <stem>.cu, for each family with CUDA code."""
    folder = ROOT / "backends" / "cuda"
    for stem in sorted({p.stem for p in folder.glob("*.cu")}):
        assert (folder / f"{stem}.py").is_file(), f"cuda/{stem}.cu has no cuda/{stem}.py"
        assert stem in kernels.FAMILIES + kernels.OTHER_FAMILIES, f"cuda/{stem}.cu is not a kernel family"


def test_quant_table_is_consistent():
    """The int8 kernels: declared once, apart from TABLE (not Backend methods), family 'quant'; each has
    the rules of the front door."""
    from cnnkern.compress import kernels as q8

    assert len(QUANT_TABLE) == len(QUANT) and not set(QUANT_TABLE) & set(TABLE)
    assert kernels.OTHER_FAMILIES == ("quant",)
    assert set(q8.RULES) == set(QUANT_TABLE)
    for kernel in QUANT:
        assert kernel.family == "quant" and not kernel.has_front_door, kernel.name
        assert {arg.type for arg in kernel.args if arg.positional} <= set(q8.DTYPES), kernel.name
        assert {arg.type for arg in kernel.args if not arg.positional} <= set(q8.CASTS), kernel.name
        assert not any(hasattr(cls, kernel.name) for cls in BACKEND_CLASSES.values()), kernel.name


def test_quant_front_door_and_backends_have_the_table_signature():
    """QuantKernels' methods (generated: the table's signature and docstring); the reference's and numba's
    module functions and the CUDA launchers (the table's signature, self dropped)."""
    from cnnkern.backends.cuda.quant import CudaQuantKernels
    from cnnkern.compress.kernels import QuantKernels

    places = {
        "front door": QuantKernels,
        "reference": importlib.import_module("cnnkern.backends.reference.quant"),
        "cuda": CudaQuantKernels,
    }
    if importlib.util.find_spec("numba") is not None:
        places["numba"] = importlib.import_module("cnnkern.backends.numba.quant")
    wrong = {}
    for place, holder in places.items():
        for kernel in QUANT:
            fn = getattr(holder, kernel.name, None)
            if fn is None or _shape(inspect.signature(fn)) != _shape(kernel.signature()):
                wrong[f"{place}: {kernel.name}"] = fn and str(inspect.signature(fn))
    assert not wrong, f"int8 kernels whose signature differs from the table: {wrong}"
    for kernel in QUANT:
        assert getattr(QuantKernels, kernel.name).__doc__ == kernel.docstring(), kernel.name


def test_generated_forwarding_calls_the_family_function():
    """The numba forwarding passes every argument, in table order, to numba/<family>.<kernel>."""
    seen = {}
    be = numba.NumbaBackend.__new__(numba.NumbaBackend)
    kernel = TABLE["avgpool2d_backward"]

    class Module:
        @staticmethod
        def avgpool2d_backward(*args):
            seen["args"] = args
            return "out"

    be._k = {kernel.family: Module}
    kw = dict(kernel_size=(2, 2), stride=(1, 1), padding=(0, 0), ceil_mode=False, count_include_pad=True)
    assert be.avgpool2d_backward("dy", (1, 1, 3, 3), **kw) == "out"
    assert seen["args"] == ("dy", (1, 1, 3, 3), (2, 2), (1, 1), (0, 0), False, True)
