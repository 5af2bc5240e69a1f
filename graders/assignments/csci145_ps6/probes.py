# Kernel-side probes for csci145-ps6 (sent as text after graders/kernel/runtime.py).
# Each probe_<PART>(P) finds the student's objects, calls them on the grader's hidden inputs and
# records what came back. It decides nothing: the grader judges the data it writes.
import inspect as _inspect

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

ITEM_LIMIT = 5000

# What each probe writes (values, arrays, and errors of the calls it made), read by the grader with
# `ast` and checked against the checks' `observes` when the assignment loads. `{x}`: any key segment. A literal:
# the grader never runs this text.
PRODUCES = {
    "1A": ("train_set.len", "train_set.item", "train_set.items", "train_set.images", "train_set.labels",
           "test_set.len", "test_set.item", "test_set.items", "test_set.images", "test_set.labels",
           "train_loader.batches", "train_loader.mismatched_batches", "train_loader.images", "train_loader.labels",
           "test_loader.batches", "test_loader.mismatched_batches", "test_loader.images", "test_loader.labels"),
    "1B": ("parameters", "logits", "losses"),
    "1C": ("K_{case}", "sigma", "K_train", "K_test", "X.{name}", "y.{name}", "candidates", "kernel_model.parameters",
           "train_logits", "test_logits"),
    "2A": ("out_{case}", "source"),
    "2B": ("net_{case}", "params_{case}", "p_{case}_{index}", "modules_{case}", "out_{case}"),
    "2C": ("train_losses", "test_losses"),
}


def _is_dataset(n):
    return lambda v: isinstance(v, Dataset) and not isinstance(v, type) and _safe_len(v) == n


def _safe_len(v):
    try:
        return len(v)
    except Exception:
        return -1


def _label(value):
    array = to_numpy(value, None)
    if array.size == 1:
        return int(array.reshape(-1)[0])
    return int(np.argmax(array)) if array.ndim == 1 else -1


def _record_dataset(P, key, ds):
    n = _safe_len(ds)
    P.value(key + ".len", n)
    images, labels = [], []
    for i in range(min(max(n, 0), ITEM_LIMIT)):
        item = ds[i]
        if i == 0:
            P.value(key + ".item", _describe_item(item))
        if not isinstance(item, (tuple, list)) or len(item) < 2:
            P.error(key + ".items", f"item 0 is a {type(item).__name__}, not an (image, label) pair", "BadItem")
            return
        images.append(to_numpy(item[0], "float32").reshape(-1))
        labels.append(_label(item[1]))
    if images:
        P.array(key + ".images", np.stack(images) if len({a.size for a in images}) == 1 else np.zeros((0,)), "float32")
        P.array(key + ".labels", labels, "int64")


def _describe_item(item):
    if not isinstance(item, (tuple, list)):
        return {"kind": type(item).__name__}
    return {
        "kind": type(item).__name__,
        "length": len(item),
        "types": [type(x).__name__ for x in item[:4]],
        "image_shape": list(np.shape(to_numpy(item[0], "float32"))),  # the data's shape, not what `.shape` claims
        "label_repr": repr(item[1])[:60] if len(item) > 1 else None,
        "label_shape": list(np.shape(to_numpy(item[1], None))) if len(item) > 1 else None,
    }


def _record_loader(P, key, loader, expected_len):
    if not isinstance(loader, DataLoader):
        P.error(key + ".batches", f"{type(loader).__name__} is not a torch DataLoader", "NotALoader")
    sizes, images, labels, mismatched = [], [], [], 0
    for batch in loader:
        if not isinstance(batch, (tuple, list)) or len(batch) < 2:
            P.error(key + ".batches", f"a batch is a {type(batch).__name__}, not (images, labels)", "BadBatch")
            return
        xb, yb = to_numpy(batch[0], "float32"), to_numpy(batch[1], None)
        mismatched += int(xb.shape[0] != yb.shape[0])
        sizes.append(int(xb.shape[0]))
        images.append(xb.reshape(xb.shape[0], -1))
        labels.append(yb.reshape(yb.shape[0], -1)[:, 0] if yb.ndim > 1 and yb.shape[-1] == 1 else (yb.argmax(-1) if yb.ndim > 1 else yb))
        if sum(sizes) > 2 * max(expected_len, 1) + 1000:
            break
    P.value(key + ".mismatched_batches", mismatched)
    if images:
        P.array(key + ".images", np.concatenate(images), "float32")
        P.array(key + ".labels", np.concatenate(labels), "int64")


def probe_1A(P):
    train = P.find("train_set", ("trainset", "train_dataset", "train_data", "training_set", "train_ds", "mnist_train", "train_subset", "ds_train", "train_mnist"), _is_dataset(1000), "Dataset of 1000 items")
    test = P.find("test_set", ("testset", "test_dataset", "test_data", "testing_set", "test_ds", "mnist_test", "test_subset", "ds_test", "test_mnist"), _is_dataset(100), "Dataset of 100 items")
    if train is not None:
        _record_dataset(P, "train_set", train)
    if test is not None:
        _record_dataset(P, "test_set", test)
    for name, aliases, ds, n in (
        ("train_loader", ("trainloader", "train_dataloader", "train_dl", "loader_train", "dl_train", "training_loader"), train, 1000),
        ("test_loader", ("testloader", "test_dataloader", "test_dl", "loader_test", "dl_test", "testing_loader"), test, 100),
    ):
        loader = P.find(name, aliases, lambda v, ds=ds, n=n: isinstance(v, DataLoader) and (v.dataset is ds or _safe_len(v.dataset) == n), f"DataLoader over {n} items")
        if loader is not None:
            P.call(name + ".batches", _record_loader, P, name, loader, n)


def _pixel_scale(P):
    """The (low, high) range of the student's own training images, to feed held-back digits alike."""
    ds = P.ns.get("train_set")
    if ds is None:
        ds = next((v for v in P.ns.values() if _is_dataset(1000)(v)), None)
    try:
        sample = np.concatenate([to_numpy(ds[i][0], "float32").reshape(-1) for i in range(32)])
        return float(sample.min()), float(sample.max())
    except Exception:
        return 0.0, 1.0


def _forward(P, key, model, x):
    """Call ``model`` on x shaped B×1×28×28, then B×784, then B×28×28; record the first that works."""
    for shape in ((-1, 1, 28, 28), (-1, 784), (-1, 28, 28)):
        try:
            with torch.no_grad():
                out = model(x.reshape(shape))
            return P.array(key, out)
        except Exception as error:  # noqa: BLE001
            last = error
    P.error(key, f"{type(last).__name__}: {last}")
    return None


def _parameters(P, key, model):
    try:
        P.value(key, [[name, list(p.shape)] for name, p in model.named_parameters()])
    except Exception as error:  # noqa: BLE001
        P.error(key, error)


def _floats(value):
    if isinstance(value, dict):
        return {str(k): _floats(v) for k, v in value.items()}
    return [float(to_numpy(v).reshape(-1)[0]) for v in list(value)]


def _is_logreg(v):
    if not isinstance(v, nn.Module):
        return False
    sizes = sorted(int(p.numel()) for p in v.parameters())
    return 7840 in sizes and sum(sizes) <= 7850


def probe_1B(P):
    model = P.find("logreg_model", ("model", "logreg", "log_reg", "logistic_model", "logistic_regression", "lr_model", "logreg_net", "clf", "net", "classifier", "linear_model"), _is_logreg, "nn.Module with a 784×10 weight")
    if model is not None:
        _parameters(P, "parameters", model)
        low, high = _pixel_scale(P)
        raw = torch.from_numpy(P.input("images").astype(np.float32) / 255.0)
        x = low + raw * (high - low)
        was_training = getattr(model, "training", False)
        P.call("logits", lambda: (model.eval(), _forward(P, "logits", model, x)))
        if was_training:
            model.train()
    losses = P.find("logreg_losses", ("losses", "logreg_loss", "logreg_loss_history", "loss_history", "train_losses_logreg", "lr_losses"))
    if losses is not None:
        P.call("losses", lambda: P.value("losses", _floats(losses)))


def _kernel_signature(v):
    if not callable(v) or isinstance(v, (type, nn.Module)):
        return False
    try:
        params = list(_inspect.signature(v).parameters)
    except (TypeError, ValueError):
        return False
    named = any(word in getattr(v, "__name__", "").lower() for word in ("kernel", "rbf", "gauss"))
    return len(params) == 3 and (named or any("sig" in p.lower() or "band" in p.lower() or p in ("s", "h", "bw", "width") for p in params))


def _call_kernel(fn, X1, X2, sigma):
    try:
        return fn(torch.from_numpy(X1), torch.from_numpy(X2), sigma)
    except Exception:  # noqa: BLE001 - retry with NumPy arrays, as the contract allows
        return fn(X1, X2, sigma)


def probe_1C(P):
    kernel = P.find("gaussian_kernel", ("gaussian_kernel_matrix", "rbf_kernel", "gauss_kernel", "kernel_fn", "kernel_function", "compute_kernel", "gaussian", "rbf", "kernel_matrix"), _kernel_signature, "function of (X1, X2, sigma)")
    params = P.params()
    if kernel is not None:
        for case in range(params.get("cases", 0)):
            X1, X2 = P.input(f"X1_{case}"), P.input(f"X2_{case}")
            sigma = float(params["sigmas"][case])
            out = P.call(f"K_{case}", _call_kernel, kernel, X1, X2, sigma)
            if out is not None:
                P.array(f"K_{case}", out)
    sigma = P.find("sigma", ("bandwidth", "SIGMA", "sig", "kernel_sigma", "bw", "width"))
    if sigma is not None:
        P.call("sigma", lambda: P.value("sigma", float(to_numpy(sigma).reshape(-1)[0])))
    K_train = P.find("K_train", ("K", "Ktrain", "K_tr", "Ktr", "kernel_train", "train_kernel", "K_train_train", "gram_train"))
    K_test = P.find("K_test", ("Ktest", "K_te", "kernel_test", "test_kernel", "K_test_train"))
    if K_train is not None:
        P.array("K_train", K_train, "float64")
    if K_test is not None:
        P.array("K_test", K_test, "float64")
    n = int(getattr(K_train, "shape", [0])[0]) if K_train is not None else 1000
    _record_candidates(P, n)
    model = P.find("kernel_model", ("kmodel", "kernel_logreg", "model_kernel", "kernel_net", "reparam_model", "kernel_clf", "model_k"), lambda v: isinstance(v, nn.Module) and any(p.dim() == 2 and n in p.shape for p in v.parameters()), f"nn.Module taking {n} inputs")
    if model is not None:
        _parameters(P, "kernel_model.parameters", model)
        model.eval()
        for key, K in (("train_logits", K_train), ("test_logits", K_test)):
            if K is not None:
                P.call(key, lambda K=K, key=key: _kernel_forward(P, key, model, K))


def _kernel_forward(P, key, model, K):
    x = torch.as_tensor(to_numpy(K, "float32"))
    with torch.no_grad():
        return P.array(key, model(x))


def _record_candidates(P, n):
    """Matrices with n rows (the student's X_train) and label vectors of length n (y_train)."""
    matrices, vectors = [], []
    for name, value in list(P.ns.items()):
        if name.startswith("_") or not isinstance(value, (torch.Tensor, np.ndarray)):
            continue
        shape = tuple(value.shape)
        if len(shape) == 2 and shape[0] == n and shape[1] not in (n, 10) and len(matrices) < 4:
            matrices.append(name)
            P.array("X." + name, value, "float32")
        elif len(shape) == 1 and shape[0] == n and len(vectors) < 6:
            vectors.append(name)
            P.array("y." + name, value, "int64")
    P.value("candidates", {"X": matrices, "y": vectors})


def probe_2A(P):
    fn = P.find("sigmoid_derivative", ("sigmoid_deriv", "dsigmoid", "sigmoid_prime", "d_sigmoid", "sigmoid_grad", "sigmoid_gradient", "sigmoid_der", "deriv_sigmoid", "dsig"))
    if fn is None:
        return
    for case in range(P.params().get("cases", 0)):
        z = P.input(f"z_{case}")
        out = P.call(f"out_{case}", lambda: _call_elementwise(fn, z))
        if out is not None:
            P.array(f"out_{case}", out)
    try:
        P.value("source", _inspect.getsource(fn)[:4000])
    except Exception:  # noqa: BLE001
        pass


def _call_elementwise(fn, z):
    try:
        return fn(torch.from_numpy(z))
    except Exception:  # noqa: BLE001
        return fn(z)


def probe_2B(P):
    make = P.find("make_mlp", ("build_mlp", "create_mlp", "mlp", "make_model", "build_model", "make_network", "MLP", "make_net", "build_network", "create_model"), None)
    if make is None:
        return
    for case, (layers, d, m, k) in enumerate(P.params().get("cases", [])):
        torch.manual_seed(case)
        net = P.call(f"net_{case}", make, layers, d, m, k)
        if net is None:
            continue
        if not isinstance(net, nn.Module):
            P.error(f"net_{case}", f"make_mlp returned a {type(net).__name__}, not an nn.Module", "NotAModule")
            continue
        P.value(f"params_{case}", [[name, list(p.shape)] for name, p in net.named_parameters()])
        for i, (name, p) in enumerate(net.named_parameters()):
            P.array(f"p_{case}_{i}", p)
        P.value(f"modules_{case}", [type(mod).__name__ for mod in net.modules() if not list(mod.children())])
        x = torch.from_numpy(P.input(f"x_{case}"))
        P.call(f"out_{case}", lambda: _mlp_forward(P, f"out_{case}", net, x))


def _mlp_forward(P, key, net, x):
    dtype = next((p.dtype for p in net.parameters()), torch.float32)
    with torch.no_grad():
        return P.array(key, net(x.to(dtype)))


def probe_2C(P):
    for name, aliases in (
        ("train_losses", ("train_loss", "train_loss_history", "training_losses", "train_hist", "losses_train")),
        ("test_losses", ("test_loss", "test_loss_history", "testing_losses", "test_hist", "losses_test", "val_losses")),
    ):
        value = P.find(name, aliases, lambda v: isinstance(v, dict) and {1, 2, 3} <= set(v), "dict with keys 1, 2, 3")
        if value is not None:
            P.call(name, lambda value=value, name=name: P.value(name, _floats(value) if isinstance(value, dict) else repr(value)[:200]))
