# Kernel-side probes for ece685d-hw2 (sent as text after graders/kernel/runtime.py).
# Each probe_<PART>(P) finds the student's objects, calls them on the grader's hidden inputs and
# records what came back as data. It decides nothing: the grader judges what it writes.
import inspect as _inspect
import pickle as _pickle
import random as _random

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

PARAM_NAMES = ("W1", "b1", "W2", "b2", "W3", "b3")
LOADER_TIMEOUT = 60

# What each probe writes (values, arrays, and errors of the calls it made), read by the grader with
# `ast` and checked against the checks' `observes` when the assignment loads. `{x}`: any key segment.
# A literal: the grader never runs this text.
PRODUCES = {
    "P1": ("case_{case}", "keys_{case}", "grad_{case}_{name}"),
    "P2": ("class", "instance", "len", "items", "indices", "item", "layout", "view_shape", "x1", "x2", "x1_again",
           "labels", "originals", "source_images", "source_labels", "source_how", "loader", "loader_workers",
           "process_limit", "pickle_error"),
    "P3": ("bce_loss_{case}", "bce_gradient_{case}", "bce_hessian_{case}", "histories"),
}


def _arity(v):
    if not callable(v) or isinstance(v, type):
        return -1
    try:
        return len(_inspect.signature(v).parameters)
    except (TypeError, ValueError):
        return -1


# ------------------------------------------------------------------------------------------------
# P1 · residual MLP gradients
# ------------------------------------------------------------------------------------------------
def _torch_activation(name):
    if name == "tanh":
        return torch.tanh, lambda a: 1 - torch.tanh(a) ** 2
    if name == "sin":
        return torch.sin, torch.cos
    if name == "hardtanh":
        return torch.nn.functional.hardtanh, lambda a: ((a > -1) & (a < 1)).to(a.dtype)
    if name == "leaky_relu":
        return (lambda a: torch.nn.functional.leaky_relu(a, 0.5),
                lambda a: torch.where(a > 0, torch.ones_like(a), 0.5 * torch.ones_like(a)))
    raise ValueError(name)


def _numpy_activation(name):
    if name == "tanh":
        return np.tanh, lambda a: 1 - np.tanh(a) ** 2
    if name == "sin":
        return np.sin, np.cos
    if name == "hardtanh":
        return (lambda a: np.clip(a, -1.0, 1.0)), (lambda a: ((a > -1) & (a < 1)).astype(np.float64))
    if name == "leaky_relu":
        return (lambda a: np.where(a > 0, a, 0.5 * a)), (lambda a: np.where(a > 0, 1.0, 0.5))
    raise ValueError(name)


def _gradient_key(result, name):
    """The key of ``result`` holding ∂L/∂name: exact, else 'dW1', 'grad_W1', 'dL_dW1' …"""
    if name in result:
        return name
    for key in result:
        plain = "".join(ch for ch in str(key) if ch.isalnum())
        if plain.lower().endswith(name.lower()) and plain[: -len(name)].lower() in ("d", "dl", "dld", "grad", "gradient", "g"):
            return key
    return None


class CallFailed(Exception):
    """Every accepted argument form raised; the message lists what each one raised."""


def _first_that_works(attempts):
    """(form, result) of the first attempt that returns; CallFailed naming every error otherwise."""
    errors = []
    for form, attempt in attempts:
        try:
            return form, attempt()
        except ProbeTimeout:
            raise
        except Exception as error:  # noqa: BLE001 - the next accepted form may work
            errors.append((form, error))
    for _, error in errors:
        if isinstance(error, AutogradUnavailable):  # the function needs autograd, whatever its arguments
            raise error
    texts = [f"{type(error).__name__}: {error}"[:160] for _, error in errors]
    if len(set(texts)) == 1:
        raise errors[0][1]  # the same error whatever the arguments: report it as it is
    raise CallFailed("; ".join(f"with {form}: {text}" for (form, _), text in zip(errors, texts)))


class AutogradUnavailable(RuntimeError):
    """Raised by every autograd entry point while P1's function runs: it must compute gradients by hand."""


_AUTOGRAD_ENTRY_POINTS = (
    ("torch.autograd", ("grad", "backward")),
    ("torch.Tensor", ("backward",)),
    ("torch.autograd.functional", ("jacobian", "hessian", "vjp", "jvp", "vhp", "hvp")),
    ("torch.func", ("grad", "grad_and_value", "vjp", "jvp", "jacrev", "jacfwd", "hessian")),
)


def _resolve_owner(dotted):
    owner = torch
    for part in dotted.split(".")[1:]:
        owner = getattr(owner, part, None)
        if owner is None:
            return None
    return owner


class _RefusingEngine:
    """Stands in for autograd's engine: every backward pass, through whatever reference, is refused."""

    def __getattr__(self, name):
        return _refuse(f"autograd's engine ({name})")


class _WithoutAutograd:
    """Gradient recording off and autograd unavailable, for the duration of one call.

    The Python entry points raise, and so do the two places every route passes through at call
    time, however the notebook kept its references (``from torch.autograd import grad``, a saved
    ``torch.enable_grad``): the engine that runs a backward pass, and the switch that turns
    recording back on.
    """

    def __enter__(self):
        from torch.autograd.variable import Variable

        self.saved = []
        self.grad_mode = torch.is_grad_enabled()
        torch.set_grad_enabled(False)
        for dotted, names in _AUTOGRAD_ENTRY_POINTS:
            owner = _resolve_owner(dotted)
            for name in names if owner is not None else ():
                if name in vars(owner):
                    self.saved.append((owner, name, vars(owner)[name]))
                    setattr(owner, name, _refuse(f"{dotted}.{name}"))
        switch = torch._C._set_grad_enabled
        self.saved.append((torch._C, "_set_grad_enabled", switch))
        torch._C._set_grad_enabled = _only_off(switch)
        self.saved.append((Variable, "_execution_engine", Variable._execution_engine))
        Variable._execution_engine = _RefusingEngine()
        return self

    def __exit__(self, *exc):
        for owner, name, original in reversed(self.saved):
            setattr(owner, name, original)
        torch.set_grad_enabled(self.grad_mode)
        return False


def _only_off(switch):
    def set_grad_enabled(mode):
        if mode:
            raise AutogradUnavailable("it turned gradient recording on, and the grader runs it with autograd unavailable")
        return switch(False)

    return set_grad_enabled


def _refuse(what):
    def refused(*args, **kwargs):
        raise AutogradUnavailable(f"it called {what}, and the grader runs it with autograd unavailable")

    return refused


def _call_gradients(fn, params, X, Y, weights):
    """Call with float64 tensors and torch g; if that raises, with NumPy arrays and NumPy g (autograd off)."""
    with _WithoutAutograd():
        return _call_gradient_forms(fn, params, X, Y, weights)


def _call_gradient_forms(fn, params, X, Y, weights):
    g, g_prime = _torch_activation(params["activation"])
    ng, ng_prime = _numpy_activation(params["activation"])
    tensors = {k: torch.from_numpy(v.copy()) for k, v in weights.items()}
    arrays = {k: v.copy() for k, v in weights.items()}
    return _first_that_works((
        ("float64 tensors", lambda: fn(torch.from_numpy(X.copy()), torch.from_numpy(Y.copy()), tensors, g, g_prime)),
        ("NumPy arrays", lambda: fn(X.copy(), Y.copy(), arrays, ng, ng_prime)),
    ))


def _record_gradients(P, case, kind, result):
    if not isinstance(result, dict):
        P.error(f"case_{case}", f"returned a {type(result).__name__}, not a dict of gradients", "NotADict")
        return
    P.value(f"keys_{case}", [str(k) for k in list(result)[:20]])
    for name in PARAM_NAMES:
        key = _gradient_key(result, name)
        if key is not None:
            P.array(f"grad_{case}_{name}", result[key])


def probe_P1(P):
    fn = P.find(
        "residual_mlp_gradients",
        ("residual_mlp_grads", "residual_gradients", "residual_backprop", "manual_gradients", "backprop_residual_mlp",
         "compute_gradients", "resmlp_gradients", "backprop", "gradients"),
        lambda v: _arity(v) == 5 and not isinstance(v, torch.nn.Module),
        "function of five arguments (X, Y, params, g, g_prime)",
    )
    if fn is None:
        return
    for case, params in enumerate(P.params().get("cases", [])):
        X, Y = P.input(f"X_{case}"), P.input(f"Y_{case}")
        weights = {name: P.input(f"{name}_{case}") for name in PARAM_NAMES}
        out = P.call(f"case_{case}", _call_gradients, fn, params, X, Y, weights)
        if out is not None:
            _record_gradients(P, case, *out)


# ------------------------------------------------------------------------------------------------
# P2 · two-view dataset
# ------------------------------------------------------------------------------------------------
SOURCE_ATTRIBUTES = ("base", "dataset", "mnist", "data", "ds", "source", "base_dataset", "mnist_dataset", "images",
                     "original", "orig", "underlying", "dset", "mnist_data", "train_set", "mnist_train")
LABEL_ATTRIBUTES = ("targets", "labels", "label", "y", "ys", "target")


def _is_two_view_class(v):
    return isinstance(v, type) and issubclass(v, Dataset) and v.__module__ == "__main__" and "view" in v.__name__.lower()


def _safe_len(v):
    try:
        return len(v)
    except Exception:  # noqa: BLE001
        return -1


def _size(x):
    try:
        return int(np.size(np.asarray(x.detach() if isinstance(x, torch.Tensor) else x)))
    except Exception:  # noqa: BLE001
        return 0


def _describe(x):
    kind = type(x).__name__
    try:
        shape = list(x.shape) if hasattr(x, "shape") else list(np.shape(np.asarray(x)))
    except Exception:  # noqa: BLE001
        shape = []
    info = {"type": kind, "module": type(x).__module__.split(".")[0], "shape": shape, "dtype": str(getattr(x, "dtype", "")),
            "tensor": isinstance(x, (torch.Tensor, np.ndarray))}
    if _size(x) <= 12:
        info["repr"] = repr(x)[:100]
    return info


def _layout(item):
    """Where the views, the label and (for a 4-tuple) the original sit in one item."""
    if isinstance(item, dict):
        return None
    if not isinstance(item, (tuple, list)):
        return None
    if len(item) == 2 and isinstance(item[0], (tuple, list)) and len(item[0]) == 2:
        return {"nested": True, "views": [0, 1], "label": 1, "original": None}
    big = [i for i, x in enumerate(item) if _size(x) >= 64]
    small = [i for i, x in enumerate(item) if 0 < _size(x) < 64]
    if len(big) < 2 or not small:
        return None
    return {"nested": False, "views": big[-2:], "label": small[0], "original": big[0] if len(big) >= 3 else None}


def _parts(item, layout):
    if layout["nested"]:
        return item[0][0], item[0][1], item[1], None
    v1, v2 = (item[i] for i in layout["views"])
    original = item[layout["original"]] if layout["original"] is not None else None
    return v1, v2, item[layout["label"]], original


def _rows(values, dtype="float32"):
    arrays = [to_numpy(v, dtype).reshape(-1) for v in values]
    if len({a.size for a in arrays}) != 1:
        raise ValueError("items have different sizes: " + ", ".join(sorted({str(a.size) for a in arrays})[:4]))
    return np.stack(arrays)


def _image_array(x):
    if isinstance(x, torch.Tensor):
        return to_numpy(x, "float32")
    return np.asarray(x, dtype=np.float32)  # PIL images included


def _raw_arrays(v, n):
    """(images, labels) of a torchvision-style dataset (``.data``/``.targets``), or of a Subset of one."""
    if isinstance(v, Subset) and hasattr(v.dataset, "data") and _safe_len(v.indices) == n:
        index = [int(i) for i in v.indices]
        inner = _raw_arrays(v.dataset, _safe_len(v.dataset))
        if inner is not None:
            return inner[0][index], None if inner[1] is None else inner[1][index]
    data = getattr(v, "data", None)
    if isinstance(data, (torch.Tensor, np.ndarray)) and len(data) == n and int(np.prod(data.shape[1:])) >= 64:
        labels = next((getattr(v, a) for a in LABEL_ATTRIBUTES if _safe_len(getattr(v, a, None)) == n), None)
        return to_numpy(data, "float32"), None if labels is None else to_numpy(labels, "float64")
    return None


def _source_from(value, ds, indices, n):
    """Images (and labels) of the sampled indices, read from one attribute of the dataset."""
    raw = _raw_arrays(value, n)
    if raw is not None:
        return raw[0][indices], None if raw[1] is None else raw[1][indices], ".data"
    if isinstance(value, (torch.Tensor, np.ndarray)) and len(value) == n and int(np.prod(value.shape[1:])) >= 64:
        labels = next((getattr(ds, a) for a in LABEL_ATTRIBUTES if _safe_len(getattr(ds, a, None)) == n), None)
        return to_numpy(value, "float32")[indices], None if labels is None else to_numpy(labels, "float64")[indices], ""
    if hasattr(value, "__getitem__") and _safe_len(value) == n and not isinstance(value, (str, bytes, dict)):
        items = [value[int(i)] for i in indices]
        if all(isinstance(it, (tuple, list)) and len(it) >= 2 for it in items):
            return _rows([_image_array(it[0]) for it in items]), _rows([it[1] for it in items], "float64"), "[i]"
    return None


def _record_sources(P, ds, indices):
    n = _safe_len(ds)
    attributes = dict(vars(ds)) if hasattr(ds, "__dict__") else {}
    ordered = [a for a in SOURCE_ATTRIBUTES if a in attributes] + [a for a in attributes if a not in SOURCE_ATTRIBUTES]
    for name in ordered:
        try:
            found = _source_from(attributes[name], ds, indices, n)
        except ProbeTimeout:
            raise
        except Exception:  # noqa: BLE001 - an attribute that cannot be read is not the source
            continue
        if found is not None:
            images, labels, how = found
            P.array("source_images", images.reshape(len(indices), -1), "float32")
            if labels is not None:
                P.array("source_labels", labels.reshape(len(indices), -1), "float64")
            P.value("source_how", f"`{name}{how}`")
            return


def _draw(ds, indices, layout):
    items = [ds[int(i)] for i in indices]
    parts = [_parts(item, layout) for item in items]
    return items, parts


def _record_items(P, ds, seed, samples):
    n = _safe_len(ds)
    indices = np.random.default_rng(seed).choice(n, size=min(samples, n), replace=False)
    P.value("indices", [int(i) for i in indices])
    torch.manual_seed(seed)
    np.random.seed(seed)
    _random.seed(seed)
    first = ds[int(indices[0])]
    P.value("item", {"kind": type(first).__name__, "length": _safe_len(first) if isinstance(first, (tuple, list)) else None,
                     "elements": [_describe(x) for x in first[:6]] if isinstance(first, (tuple, list)) else []})
    layout = _layout(first)
    P.value("layout", layout)
    if layout is None:
        return
    _, parts = _draw(ds, indices, layout)
    _, again = _draw(ds, indices, layout)
    P.value("view_shape", list(_image_array(parts[0][0]).shape))
    for key, column, draws in (("x1", 0, parts), ("x2", 1, parts), ("x1_again", 0, again)):
        P.call(key, lambda key=key, column=column, draws=draws: P.array(key, _rows([_image_array(d[column]) for d in draws]), "float32"))
    P.call("labels", lambda: P.array("labels", _rows([p[2] for p in parts], "float64"), "float64"))
    if parts[0][3] is not None:
        P.call("originals", lambda: P.array("originals", _rows([_image_array(p[3]) for p in parts]), "float32"))
    P.call("source_images", _record_sources, P, ds, indices)  # an error finding the source is told under its key


def _describe_batch(batch):
    if isinstance(batch, (tuple, list)):
        return {"kind": type(batch).__name__, "elements": [_describe(x) for x in batch[:6]]}
    return {"kind": type(batch).__name__, "elements": []}


class WorkerError(Exception):
    """An error raised in a DataLoader worker, condensed to its first line and the original error."""


def _loader_batches(P, key, ds, workers):
    loader = DataLoader(ds, batch_size=8, shuffle=True, num_workers=workers, timeout=LOADER_TIMEOUT if workers else 0,
                        generator=torch.Generator().manual_seed(0))
    iterator = None
    try:
        iterator = iter(loader)
        P.value(key, [_describe_batch(next(iterator)) for _ in range(2)])
    except ProbeTimeout:
        raise
    except Exception as error:  # noqa: BLE001 - keep "Caught X in worker" and the original error, not the worker's traceback
        lines = [line for line in str(error).strip().splitlines() if line.strip()]
        if "Original Traceback" in str(error) and len(lines) > 1:
            raise WorkerError(f"{lines[0]} {lines[-1]}") from error
        raise
    finally:
        shutdown = getattr(iterator, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()


def _record_worker_context(P, ds):
    try:
        import resource

        P.value("process_limit", list(resource.getrlimit(resource.RLIMIT_NPROC)))
    except Exception:  # noqa: BLE001
        pass
    try:
        _pickle.dumps(ds)
    except ProbeTimeout:
        raise
    except Exception as error:  # noqa: BLE001 - spawn-based workers (macOS, Windows) would fail the same way
        P.value("pickle_error", f"{type(error).__name__}: {error}"[:300])


def probe_P2(P):
    cls = P.find(
        "MNISTTwoView",
        ("TwoViewMNIST", "MNISTTwoViews", "MnistTwoView", "TwoViewDataset", "MNISTMultiView", "MultiViewMNIST",
         "MNISTTwoViewDataset", "TwoViewMNISTDataset", "MNIST2View"),
        _is_two_view_class,
        "Dataset class defined in the notebook with 'View' in its name",
    )
    if cls is not None:
        P.value("class", {"is_class": isinstance(cls, type), "name": getattr(cls, "__name__", type(cls).__name__),
                          "subclasses_dataset": isinstance(cls, type) and issubclass(cls, Dataset),
                          "bases": [b.__name__ for b in getattr(cls, "__mro__", ())[1:6]]})
    is_instance = (lambda v: isinstance(v, cls)) if isinstance(cls, type) else (lambda v: False)
    ds = P.find(
        "two_view_dataset",
        ("two_view_ds", "twoview_dataset", "two_view_data", "two_view_train", "mnist_two_view", "two_view_mnist",
         "train_two_view", "dataset_two_view", "twoview_ds", "multiview_dataset", "two_views_dataset"),
        is_instance,
        "instance of " + getattr(cls, "__name__", "MNISTTwoView"),
    )
    if ds is None:
        return
    P.value("instance", {"type": type(ds).__name__, "of_class": bool(is_instance(ds)), "is_dataset": isinstance(ds, Dataset)})
    n = P.call("len", len, ds)
    P.value("len", n)
    if not isinstance(n, int) or n <= 0:
        return
    params = P.params()
    P.call("items", _record_items, P, ds, int(params.get("seed", 0)), int(params.get("samples", 48)))
    P.call("loader", _loader_batches, P, "loader", ds, 0)
    P.call("process_limit", _record_worker_context, P, ds)
    P.call("loader_workers", _loader_batches, P, "loader_workers", ds, 2)


# ------------------------------------------------------------------------------------------------
# P3 · logistic regression
# ------------------------------------------------------------------------------------------------
BCE_ALIASES = {
    "bce_loss": ("binary_cross_entropy", "bce", "loss_fn", "logistic_loss", "bce_loss_fn", "cross_entropy_loss", "nll_loss"),
    "bce_gradient": ("bce_grad", "gradient", "grad_bce", "bce_gradient_fn", "logistic_gradient", "compute_gradient", "grad"),
    "bce_hessian": ("bce_hess", "hessian", "hess_bce", "bce_hessian_fn", "logistic_hessian", "compute_hessian", "hess"),
}


def _bce_forms(w, X, y):
    """The argument forms tried in turn: 1-D tensors, 1-D arrays, w requiring grad, column vectors (d×1, n×1)."""
    t = torch.from_numpy
    yield "1-D float64 tensors", lambda: (t(w.copy()), t(X.copy()), t(y.copy()))
    yield "1-D NumPy arrays", lambda: (w.copy(), X.copy(), y.copy())
    yield "w requiring grad", lambda: (t(w.copy()).requires_grad_(True), t(X.copy()), t(y.copy()))
    yield "column tensors", lambda: (t(w.reshape(-1, 1).copy()), t(X.copy()), t(y.reshape(-1, 1).copy()))
    yield "column NumPy arrays", lambda: (w.reshape(-1, 1).copy(), X.copy(), y.reshape(-1, 1).copy())


def _call_bce(P, key, fn, w, X, y):
    form, out = _first_that_works((form, lambda make=make: fn(*make())) for form, make in _bce_forms(w, X, y))
    return out


def _floats(values):
    if isinstance(values, (torch.Tensor, np.ndarray)):
        return [float(v) for v in to_numpy(values).reshape(-1)[:100000]]
    return [float(to_numpy(v).reshape(-1)[0]) for v in list(values)[:100000]]


def _histories(value):
    found = {}
    for method, record in list(value.items())[:12]:
        if not isinstance(record, dict):
            found[str(method)] = {"_type": type(record).__name__}
            continue
        entry = {}
        for name, series in list(record.items())[:20]:
            try:
                entry[str(name)] = _floats(series)
            except ProbeTimeout:
                raise
            except Exception as error:  # noqa: BLE001
                entry[str(name)] = f"unreadable: {type(error).__name__}: {error}"[:200]
        found[str(method)] = entry
    return found


def probe_P3(P):
    params = P.params()
    for name, aliases in BCE_ALIASES.items():
        fn = P.find(name, aliases, lambda v: _arity(v) == 3, "function of (w, X, y)")
        if fn is None:
            continue
        for case in range(params.get("cases", 0)):
            w, X, y = P.input(f"w_{case}"), P.input(f"X_{case}"), P.input(f"y_{case}")
            key = f"{name}_{case}"
            out = P.call(key, _call_bce, P, key, fn, w, X, y)
            if out is not None:
                P.array(key, out)
    histories = P.find("histories", ("history", "hist", "results", "all_histories", "histories_dict", "training_histories"),
                       lambda v: isinstance(v, dict) and {"gd", "newton"} <= {str(k) for k in v}, "dict with keys 'gd' and 'newton'")
    if histories is not None:
        if not isinstance(histories, dict):
            P.error("histories", f"`histories` is a {type(histories).__name__}, not a dict", "NotADict")
        else:
            P.call("histories", lambda: P.value("histories", _histories(histories)))
