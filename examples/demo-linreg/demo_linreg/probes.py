# Kernel-side probes for demo-linreg (sent to the student's kernel as text, never imported by the grader).
# Each probe_<PART>(P) finds the student's object, calls it on the grader's hidden inputs and
# records what came back. It decides nothing: the checks in rubric.py judge what it writes.

# What each probe writes, read by the grader with `ast` and checked against the checks' `observes`
# when the assignment loads. `{case}` stands for one key segment. A literal: never executed there.
PRODUCES = {
    "LR1": ("mse_loss_{case}",),
    "LR2": ("mse_gradient_{case}",),
    "LR3": ("fit", "w", "losses"),
}


def _arity(v):
    import inspect

    if not callable(v) or isinstance(v, type):
        return -1
    try:
        return len(inspect.signature(v).parameters)
    except (TypeError, ValueError):
        return -1


def _call_on_cases(P, name, aliases):
    fn = P.find(name, aliases, lambda v: _arity(v) == 3, "function of (w, X, y)")
    if fn is None:
        return
    for case in range(P.params().get("cases", 0)):
        w, X, y = P.input(f"w_{case}"), P.input(f"X_{case}"), P.input(f"y_{case}")
        key = f"{name}_{case}"
        out = P.call(key, fn, w, X, y)
        if out is not None:
            P.array(key, out)


def probe_LR1(P):
    _call_on_cases(P, "mse_loss", ("mse", "loss", "mean_squared_error"))


def probe_LR2(P):
    _call_on_cases(P, "mse_gradient", ("mse_grad", "gradient", "grad_mse"))


def probe_LR3(P):
    fn = P.find("fit_linreg", ("fit", "train", "gradient_descent"), lambda v: _arity(v) == 4, "function of (X, y, lr, steps)")
    if fn is None:
        return
    params = P.params()
    out = P.call("fit", fn, P.input("X"), P.input("y"), params["lr"], params["steps"])
    if out is None:
        return
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        P.error("fit", f"returned a {type(out).__name__}, not the pair (w, losses)", "NotAPair")
        return
    P.array("w", out[0])
    P.array("losses", out[1])
