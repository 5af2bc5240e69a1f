# Runs inside the student's kernel, in a private namespace, after the student's cells.
# It gives the per-assignment probes a small toolkit: find the student's objects, call them on the
# grader's hidden inputs, and write what came back as data (values.json and .npy files) into the
# exchange directory. Nothing here decides whether anything is right.
# First it puts back the library functions the notebook may have monkeypatched (json.dump,
# np.save, torch.allclose, builtins.open …), from the copies the prelude kept before any student
# code ran, so that neither the probes nor the student's functions they call see the patches.
# The state's name is drawn per session by the grader (replaced in this text before it is sent).
import sys as _sys

_STATE_NAME = "_nbgrade"
_STATE_PIN = ()
_STATE = _sys.modules.get(_STATE_NAME)
TAMPERED = bool(_STATE_PIN) and (
    id(_STATE), id(getattr(_STATE, "restore_pristine", None)), id(getattr(_STATE, "figures", None)),
    getattr(_STATE, "nonce", None)) != tuple(_STATE_PIN)
"""The notebook replaced the prelude's state (or its functions): nothing it records can be trusted."""
RESTORED = list(_STATE.restore_pristine()) if hasattr(_STATE, "restore_pristine") and not TAMPERED else []

import json as _json
import os as _os
import signal as _signal
import traceback as _traceback

import numpy as _np

MAX_ARRAY_BYTES = 64 * 1024 * 1024


class ProbeTimeout(BaseException):  # not an Exception: a probe's own `except Exception` must not swallow it
    pass


class Probe:
    """The toolkit one part's probe receives (``P``)."""

    def __init__(self, user_ns, inputs_dir, out_dir, part, call_timeout):
        self.ns = user_ns
        self.part = part
        self.inputs_dir = inputs_dir
        self.out_dir = out_dir
        _os.makedirs(self.out_dir, exist_ok=True)
        self.values = {"found": {}, "errors": {}}
        self.call_timeout = call_timeout

    # ------------------------------------------------------------------ inputs
    def input(self, name):
        return _np.load(_os.path.join(self.inputs_dir, name + ".npy"), allow_pickle=False)

    def params(self):
        path = _os.path.join(self.inputs_dir, "params.json")
        if not _os.path.exists(path):
            return {}
        with open(path) as handle:
            return _json.load(handle)

    # ------------------------------------------------------------------ finding objects
    def find(self, contract, aliases=(), predicate=None, describe=""):
        """The student's object for a contract name: exact, then alias, then discovered."""
        ns = self.ns
        placeholder = ns.get(contract, ...) is None  # a template stub left as None: look further, then say so
        if contract in ns and not placeholder and not _is_ipython_name(contract):
            return self._found(contract, contract, "exact", "defined under the contract name")
        for alias in aliases:
            if alias in ns and (predicate is None or _satisfies(predicate, ns[alias])):
                return self._found(contract, alias, "alias", f"`{alias}` is a documented alias of `{contract}`")
        if predicate is not None:
            matches = []
            for name, value in list(ns.items()):
                if name.startswith("_") or _is_ipython_name(name):
                    continue
                try:
                    if predicate(value) and _may_stand_for(contract, name, value):
                        matches.append(name)
                except Exception:
                    continue
            if len(matches) == 1:
                return self._found(contract, matches[0], "discovered", f"`{matches[0]}` is the only {describe}")
            if matches:
                self.values["found"][contract] = {
                    "found_as": None, "how": "ambiguous",
                    "reason": f"several candidates ({', '.join(sorted(matches)[:5])}) are {describe}; none named `{contract}`",
                }
                return None
        if placeholder:
            self.values["found"][contract] = {"found_as": None, "how": "placeholder", "reason": f"`{contract}` is still None"}
            return None
        self.values["found"][contract] = {"found_as": None, "how": "missing", "reason": f"`{contract}` is not defined"}
        return None

    def _found(self, contract, name, how, reason):
        self.values["found"][contract] = {"found_as": name, "how": how, "reason": reason}
        return self.ns[name]

    # ------------------------------------------------------------------ calling with a time limit
    def call(self, key, fn, *args, **kwargs):
        """Call student code; on error record it under ``key`` and return None."""
        previous = _signal.signal(_signal.SIGALRM, _raise_timeout)
        _signal.setitimer(_signal.ITIMER_REAL, self.call_timeout)
        try:
            return fn(*args, **kwargs)
        except ProbeTimeout:
            self.values["errors"][key] = {"type": "Timeout", "message": f"did not return within {self.call_timeout:g} s"}
        except BaseException as error:  # noqa: BLE001 - student code may raise anything, even SystemExit
            self.values["errors"][key] = {
                "type": type(error).__name__,
                "message": str(error)[:500],
                "traceback": "".join(_traceback.format_exception(type(error), error, error.__traceback__))[-4000:],
            }
        finally:
            _signal.setitimer(_signal.ITIMER_REAL, 0)
            _signal.signal(_signal.SIGALRM, previous)
        return None

    # ------------------------------------------------------------------ recording data
    def value(self, key, value):
        self.values[key] = _jsonable(value)

    def array(self, key, value, dtype="float64"):
        """Save ``value`` (tensor, array, list) as ``key.npy``; record why not when impossible."""
        try:
            array = to_numpy(value, dtype)
        except Exception as error:  # noqa: BLE001
            self.values["errors"][key] = {"type": type(error).__name__, "message": f"could not convert to an array: {error}"[:500]}
            return None
        if array.nbytes > MAX_ARRAY_BYTES:
            self.values["errors"][key] = {"type": "TooLarge", "message": f"array of shape {array.shape} is too large to inspect"}
            return None
        _np.save(_os.path.join(self.out_dir, key + ".npy"), array, allow_pickle=False)
        self.values.setdefault("arrays", []).append(key)
        return array

    def error(self, key, message, kind="Error"):
        self.values["errors"][key] = {"type": kind, "message": str(message)[:500]}

    def finish(self):
        with open(_os.path.join(self.out_dir, "values.json"), "w") as handle:
            _json.dump(self.values, handle, default=str)


def _satisfies(predicate, value):
    try:
        return bool(predicate(value))
    except Exception:
        return False


def _raise_timeout(signum, frame):
    raise ProbeTimeout()


def _may_stand_for(contract, name, value):
    """A function found only by its signature must also be named like the contract name (graders/kernel/naming.py):
    `rbf_matrix(X1, X2, gamma)` has cross_loss's three arguments, and is not cross_loss."""
    relates = globals().get("name_relates")
    if relates is None or not callable(value) or isinstance(value, type) or not hasattr(value, "__code__"):
        return True
    return relates(contract, name)


def _is_ipython_name(name):
    return name in {"In", "Out", "exit", "quit", "get_ipython", "open"}


def to_numpy(value, dtype="float64"):
    """A real ndarray from a tensor (subclasses included), array, list or number.

    A tensor subclass is read through the base class's methods with ``__torch_function__``
    disabled, so an overridden ``detach``/``numpy``/``__array__`` cannot change what is recorded.
    """
    try:
        import torch

        if isinstance(value, torch.Tensor):
            with torch._C.DisableTorchFunctionSubclass():
                value = torch.Tensor.cpu(torch.Tensor.detach(value))
                value = torch.Tensor.to(value, torch.float64 if dtype == "float64" else value.dtype)
                value = torch.Tensor.numpy(torch.Tensor.contiguous(value)).copy()
    except ImportError:
        pass
    array = _np.array(value, dtype=dtype if dtype else None, copy=True)
    return _np.ascontiguousarray(array)


def _jsonable(value, depth=0):
    if depth > 6:
        return repr(value)[:200]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return value if not isinstance(value, float) or _np.isfinite(value) else str(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v, depth + 1) for k, v in list(value.items())[:200]}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, depth + 1) for v in list(value)[:10000]]
    try:
        return float(value)
    except Exception:
        return repr(value)[:200]


def defined_names(user_ns):
    names = []
    for name, value in list(user_ns.items()):
        if name.startswith("_") or _is_ipython_name(name):
            continue
        kind = type(value).__name__
        if kind == "module":
            continue
        names.append({"name": name, "type": kind})
    return names[:500]


def run_probe(user_ns, inputs_dir, out_dir, part, probe, call_timeout):
    P = Probe(user_ns, inputs_dir, out_dir, part, call_timeout)
    if TAMPERED:
        P.values["tampered"] = True
    if RESTORED:
        P.values["restored"] = RESTORED[:50]
    try:
        probe(P)
    except BaseException as error:  # noqa: BLE001
        P.values["errors"]["probe"] = {
            "type": type(error).__name__,
            "message": str(error)[:500],
            "traceback": "".join(_traceback.format_exception(type(error), error, error.__traceback__))[-4000:],
        }
    P.finish()
