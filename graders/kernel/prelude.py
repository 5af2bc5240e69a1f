# Runs inside the student's kernel before the first student cell (sent as text by graders.execute,
# executed in a private namespace: nothing here is visible among the student's names).
# It fixes seeds and threads, makes MNIST load offline, neutralises what cannot work while grading
# (input(), Colab, the templates' check() cells), caps what a cell may send as output, records the
# structure of every matplotlib figure the notebook draws, and keeps pristine copies of the library
# functions the grader's probes use (a notebook may monkeypatch them; the probes restore them).
# What concerns the heavy libraries (torch, torchvision, matplotlib, numpy) is applied by a
# post-import hook the moment they are first imported, before any student code can use them. The
# ones the notebook imports are imported here (NBGRADE_PRELOAD), so that their import time never
# counts against a cell's time limit; a notebook that needs none of them starts in about a second.
# Everything the grader's later cells need is kept in the module ``sys.modules["_nbgrade"]``.
# The grader fills in the values below before sending this text. NBGRADE_STATE is drawn per session,
# so that a notebook cannot prepare a replacement for the state under a name it knows in advance.
NBGRADE_SEED = 0
NBGRADE_MNIST_ROOT = ""
NBGRADE_OUTPUT_CAP = 0
NBGRADE_PRELOAD = ()
NBGRADE_STATE = "_nbgrade"

import builtins
import importlib.abc
import os
import sys
import types

from IPython import get_ipython

PRISTINE_ATTRIBUTES = {
    # module or class → the attributes the probes (and the student's functions they call) rely on
    "builtins": (
        "open", "print", "isinstance", "issubclass", "len", "list", "dict", "tuple", "set", "float", "int", "str",
        "repr", "type", "range", "sorted", "sum", "min", "max", "getattr", "setattr", "hasattr", "callable", "iter",
        "next", "enumerate", "zip", "any", "all", "abs", "round", "bool", "vars", "map", "filter", "compile", "exec",
    ),
    "json": ("dump", "dumps", "load", "loads"),
    "os": ("makedirs", "listdir", "replace", "remove", "getpid", "fspath"),
    "os.path": ("join", "exists", "isfile", "isdir", "dirname", "basename"),
    "signal": ("signal", "setitimer", "alarm"),
    "traceback": ("format_exception",),
    "inspect": ("signature", "getsource"),
    "numpy": (
        "save", "load", "array", "asarray", "ascontiguousarray", "allclose", "isclose", "isfinite", "stack",
        "concatenate", "argmax", "zeros", "shape", "prod", "float64", "float32", "int64",
    ),
    "torch": (
        "allclose", "isclose", "equal", "from_numpy", "tensor", "as_tensor", "no_grad", "manual_seed", "sigmoid",
        "exp", "is_tensor", "randperm", "float64", "float32",
    ),
    "torch.autograd": ("grad", "backward"),
    "torch.Tensor": (
        "detach", "cpu", "numpy", "to", "contiguous", "__array__", "numel", "dim", "size", "shape", "dtype",
        "float", "double", "__eq__", "__len__", "__iter__", "__getitem__", "__torch_function__", "backward",
    ),
    "torch.nn.Module": ("__call__", "parameters", "named_parameters", "modules", "children", "eval", "train"),
}
_MISSING = object()


class PostImportHooks(importlib.abc.MetaPathFinder):
    """Call ``hooks[name](module)`` right after module ``name`` is first imported (or now, if it is)."""

    def __init__(self, hooks):
        self.hooks = dict(hooks)
        for name in list(self.hooks):
            if name in sys.modules:
                self._fire(name, sys.modules[name])

    def _fire(self, name, module):
        hook = self.hooks.pop(name, None)
        if hook is not None:
            try:
                hook(module)
            except Exception:
                pass

    def find_spec(self, name, path, target=None):
        if name not in self.hooks:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None and spec.loader is not None and hasattr(spec.loader, "exec_module"):
                spec.loader = _LoaderThenHook(spec.loader, lambda module: self._fire(name, module))
                return spec
            if spec is not None:
                return spec
        return None


class _LoaderThenHook(importlib.abc.Loader):
    def __init__(self, loader, after):
        self._loader, self._after = loader, after

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        module.__loader__ = self._loader
        self._after(module)

    def __getattr__(self, name):
        return getattr(self._loader, name)


def seed_random(seed):
    import random

    random.seed(seed)


def seed_numpy(seed):
    return lambda numpy: numpy.random.seed(seed)


def seed_torch(seed):
    def hook(torch):
        torch.manual_seed(seed)
        torch.set_num_threads(int(os.environ.get("NBGRADE_THREADS", "1")))

    return hook


def neutralise_input():
    def _input(prompt=""):
        sys.stderr.write("[grader] input() is not available while grading; it returned ''.\n")
        return ""

    builtins.input = _input
    try:
        kernel = get_ipython().kernel  # ipykernel re-binds input() per cell to kernel.raw_input
        kernel.raw_input = _input
        kernel.getpass = lambda prompt="", stream=None: _input(prompt)
    except Exception:
        pass


def fake_colab_and_checks():
    colab = types.ModuleType("google.colab")
    drive = types.ModuleType("google.colab.drive")
    files = types.ModuleType("google.colab.files")
    drive.mount = lambda *a, **k: sys.stderr.write("[grader] drive.mount() skipped while grading.\n")
    drive.flush_and_unmount = lambda *a, **k: None
    files.download = lambda *a, **k: None
    files.upload = lambda *a, **k: {}
    colab.drive, colab.files = drive, files
    try:
        import google  # a real namespace package (protobuf, google-auth) must stay importable
    except ImportError:
        google = types.ModuleType("google")
        google.__path__ = []
        sys.modules["google"] = google
    google.colab = colab
    sys.modules["google.colab"], sys.modules["google.colab.drive"] = colab, drive
    sys.modules["google.colab.files"] = files
    # The templates' `from graders import check; check(PART)` cells: the grader runs every check itself.
    local_checks = types.ModuleType("graders")
    local_checks.check = lambda *a, **k: print("[grader] check() is skipped while grading: every check runs after your notebook.")
    sys.modules["graders"] = local_checks


def offline_mnist(mnist_root):
    """A hook for torchvision.datasets: ``MNIST(root, download=True)`` works offline, from any root."""
    return lambda datasets: _patch_mnist(datasets, mnist_root) if mnist_root else None


def _patch_mnist(datasets, mnist_root):
    import shutil

    def download(self):
        # "Downloading" MNIST copies the grader's offline copy: there is no network here.
        if self._check_exists():
            return
        os.makedirs(self.raw_folder, exist_ok=True)
        source = os.path.join(mnist_root, "MNIST", "raw")
        for name in os.listdir(source):
            shutil.copyfile(os.path.join(source, name), os.path.join(self.raw_folder, name))

    original_init = datasets.MNIST.__init__

    def init(self, *args, **kwargs):
        # A root that cannot be read or written here (Colab's /content, a Windows path, a
        # read-only place) falls back to the grader's copy, with a note, instead of failing.
        try:
            return original_init(self, *args, **kwargs)
        except (RuntimeError, OSError) as error:
            if getattr(type(self), "mirrors", None) != datasets.MNIST.mirrors:
                raise
            if "root" in kwargs:
                kwargs["root"] = mnist_root
            elif args:
                args = (mnist_root, *args[1:])
            sys.stderr.write(f"[grader] MNIST could not be loaded from the path in your code ({error}); "
                             "the grader's offline copy was used.\n")
            return original_init(self, *args, **kwargs)

    datasets.MNIST.download = download
    datasets.MNIST.__init__ = init


def cap_output(limit):
    """Cap what one cell sends as output (text, images, tracebacks) before it leaves the kernel.

    Every message of the kernel goes through its Session's ``send``; past ``limit`` characters
    in a cell, stream text is cut with a note and further outputs are dropped. Status and reply
    messages always pass. The grader enforces its own bounds too: this only keeps the common
    case fast and the truncation visible to the student.
    """
    try:
        session = get_ipython().kernel.session
    except Exception:
        return
    original_send = session.send
    used = [0, False]  # characters sent in this cell, whether the truncation note was sent
    outputs = {"stream", "display_data", "execute_result", "update_display_data"}

    def reset(*_args, **_kwargs):
        used[0], used[1] = 0, False

    def send(stream, msg_or_type, content=None, *args, **kwargs):
        is_message = isinstance(msg_or_type, dict)
        kind = msg_or_type.get("header", {}).get("msg_type") if is_message else msg_or_type
        body = msg_or_type.get("content") if is_message else content
        if isinstance(body, dict) and kind in outputs:
            body = _capped(body, kind, limit, used)
            if body is None:
                return None
            body = _encodable(body)
        elif isinstance(body, dict) and kind in ("error", "execute_reply"):
            body = _short_error(_encodable(body))
        if is_message:
            msg_or_type = {**msg_or_type, "content": body}
        else:
            content = body
        return original_send(stream, msg_or_type, content, *args, **kwargs)

    session.send = send
    get_ipython().events.register("pre_run_cell", reset)


def _encodable(value, depth=0):
    """``value`` with every string made UTF-8-encodable (a lone surrogate would stop the message being sent)."""
    if isinstance(value, str):
        if value.isascii():
            return value
        try:
            value.encode("utf-8")
            return value
        except UnicodeEncodeError:
            return value.encode("utf-8", "replace").decode("utf-8")
    if depth > 6:
        return value
    if isinstance(value, dict):
        return {_encodable(k, depth + 1): _encodable(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [_encodable(v, depth + 1) for v in value]
    return value


def _text_size(value, depth=0):
    if isinstance(value, str):
        return len(value)
    if depth > 3:
        return 0
    if isinstance(value, dict):
        return sum(_text_size(v, depth + 1) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(_text_size(v, depth + 1) for v in value)
    return 8


def _capped(body, kind, limit, used):
    size = _text_size(body)
    if used[0] + size <= limit:
        used[0] += size
        return body
    if used[1]:
        return None
    used[1] = True
    note = "\n[grader] output truncated: this cell printed too much.\n"
    if kind == "stream":
        room = max(0, limit - used[0])
        used[0] = limit
        return {**body, "text": str(body.get("text", ""))[:room] + note}
    used[0] = limit
    return {**body, "data": {"text/plain": note.strip()}, "metadata": {}}


def _short_error(body, chars=10_000, frames=60):
    if "evalue" not in body and "traceback" not in body:
        return body
    trace = body.get("traceback")
    if isinstance(trace, list):
        trace = [str(line)[:chars] for line in trace[-frames:]]
    return {**body, "evalue": str(body.get("evalue", ""))[:chars], "traceback": trace}


def snapshot_pristine(saved, top, modules=None):
    """Capture the attributes PRISTINE_ATTRIBUTES lists under module ``top``, before student code runs.

    ``modules`` also keeps the module objects themselves: a notebook that puts another object in
    ``sys.modules`` (``sys.modules['json'] = fake``) gets the original put back before any probe.
    """
    if modules is not None:
        for dotted in PRISTINE_ATTRIBUTES:
            name = dotted.rpartition(".")[0] if dotted == "torch.Tensor" or dotted.endswith(".Module") else dotted
            if name.split(".")[0] == top and name in sys.modules:
                modules[name] = sys.modules[name]
    for owner_name, names in PRISTINE_ATTRIBUTES.items():
        if owner_name.split(".")[0] != top:
            continue
        owner = _resolve(owner_name)
        if owner is None:
            continue
        space = vars(owner)
        for name in names:
            saved.append((owner, name, space.get(name, _MISSING)))


def _resolve(dotted):
    import importlib

    module_name, _, attribute = dotted.partition(".")
    try:
        owner = importlib.import_module(module_name)
        for part in attribute.split(".") if attribute else ():
            owner = getattr(owner, part)
        return owner
    except Exception:
        return None


def restore_modules(modules):
    """Put back the library modules the notebook replaced in ``sys.modules``; the names restored."""
    restored = []
    for name, module in modules.items():
        if sys.modules.get(name) is not module:
            sys.modules[name] = module
            restored.append(f"sys.modules[{name!r}]")
    return restored


def restore_pristine(saved):
    """Put back every captured attribute the notebook replaced, added or deleted; the names restored.

    Libraries legitimately re-wrap some of these (importing torchvision wraps torch.manual_seed),
    so only replacements that look made by the notebook are undone: code defined in the notebook,
    a deletion, a non-callable where a function was, or a function with another name.
    """
    restored = []
    for owner, name, original in saved:
        current = vars(owner).get(name, _MISSING)
        if current is original or not _made_by_notebook(current, original):
            continue
        try:
            if original is _MISSING:
                delattr(owner, name)
            else:
                setattr(owner, name, original)
            restored.append(f"{getattr(owner, '__name__', owner)}.{name}")
        except Exception:
            pass
    return restored


def _log_restored(log, names):
    """Every name restored so far in this kernel (each probe's restore adds to it)."""
    log.extend(name for name in names if name not in log)
    return list(log)


def _made_by_notebook(current, original):
    if current is _MISSING or original is _MISSING:
        return current is _MISSING or _defined_in_notebook(current)
    if _defined_in_notebook(current) or callable(current) != callable(original):
        return True
    name = getattr(current, "__name__", None)
    return name is not None and name != getattr(original, "__name__", name)


def _defined_in_notebook(value):
    for candidate in (value, getattr(value, "fget", None), getattr(value, "__func__", None)):
        if getattr(candidate, "__module__", None) == "__main__":
            return True
    return False


def figure_recorder():
    """Record the structure of every matplotlib figure, placed by the cell that drew it."""
    import weakref

    figures = []
    positions = weakref.WeakKeyDictionary()  # figure → its slot in `figures` (id() is reused after GC)
    current_cell = [None]

    def remember_cell(info=None, *_args, **_kwargs):
        # Figures are placed by the source of the cell that drew them: execution counts differ
        # between IPython versions, the cell's text does not.
        import hashlib

        try:
            current_cell[0] = hashlib.sha1(info.raw_cell.encode("utf-8", "replace")).hexdigest()[:16]
        except Exception:
            current_cell[0] = None

    def record(fig):
        try:
            record = {"cell_hash": current_cell[0], **describe_figure(fig)}
            if fig in positions:
                figures[positions[fig]] = {**record, "cell_hash": figures[positions[fig]]["cell_hash"]}
            else:
                positions[fig] = len(figures)
                figures.append(record)
        except Exception:
            pass

    def record_open_figures(*_args, **_kwargs):
        try:
            from matplotlib import _pylab_helpers

            for manager in list(_pylab_helpers.Gcf.get_all_fig_managers()):
                record(manager.canvas.figure)
        except Exception:
            pass

    ip = get_ipython()
    ip.events.callbacks["post_execute"].insert(0, lambda *a, **k: "matplotlib" in sys.modules and record_open_figures())
    ip.events.register("pre_run_cell", remember_cell)
    return lambda: list(figures), lambda pyplot: _hook_matplotlib(record, record_open_figures)


def _hook_matplotlib(record, record_open_figures):
    """After matplotlib.pyplot is imported: record figures when closed, saved or shown."""
    from matplotlib import _pylab_helpers
    from matplotlib.figure import Figure

    original_destroy = _pylab_helpers.Gcf.destroy.__func__

    def destroy(cls, num):
        try:
            manager = num if hasattr(num, "canvas") else cls.figs.get(num)
            if manager is not None:
                record(manager.canvas.figure)
        except Exception:
            pass
        return original_destroy(cls, num)

    _pylab_helpers.Gcf.destroy = classmethod(destroy)
    original_destroy_all = _pylab_helpers.Gcf.destroy_all.__func__

    def destroy_all(cls):
        record_open_figures()
        return original_destroy_all(cls)

    _pylab_helpers.Gcf.destroy_all = classmethod(destroy_all)
    original_savefig = Figure.savefig

    def savefig(self, *args, **kwargs):
        record(self)
        return original_savefig(self, *args, **kwargs)

    Figure.savefig = savefig


def describe_figure(fig):
    axes = []
    for ax in fig.axes:
        try:
            spec = ax.get_subplotspec()
            grid = spec.get_gridspec()
            geometry = [grid.nrows, grid.ncols, spec.rowspan.start, spec.colspan.start]
        except Exception:
            geometry = None
        legend = ax.get_legend()
        axes.append(
            {
                "title": " ".join(t for t in (ax.get_title("left"), ax.get_title(), ax.get_title("right")) if t),
                "xlabel": ax.get_xlabel(),
                "ylabel": ax.get_ylabel(),
                "images": len(ax.images),
                "image_shapes": [list(getattr(im.get_array(), "shape", ())) for im in ax.images[:3]],
                "lines": [
                    {
                        "label": str(line.get_label()),
                        "linestyle": str(line.get_linestyle()),
                        "points": int(len(line.get_xdata())),
                        "visible": bool(line.get_visible()),
                    }
                    for line in ax.lines[:50]
                ],
                "texts": [t.get_text() for t in ax.texts[:30]],
                "legend": [t.get_text() for t in legend.get_texts()] if legend else [],
                "collections": len(ax.collections),
                "patches": len(ax.patches),
                "visible": bool(ax.get_visible() and ax.axison or ax.images or ax.lines),
                "geometry": geometry,
            }
        )
    suptitle = getattr(fig, "_suptitle", None)
    return {
        "suptitle": suptitle.get_text() if suptitle is not None else "",
        "axes": axes,
        "texts": [t.get_text() for t in fig.texts[:30]],
    }


def install(seed, mnist_root, output_cap):
    seed_random(seed)
    neutralise_input()
    fake_colab_and_checks()
    if output_cap:
        cap_output(output_cap)
    state = types.ModuleType(NBGRADE_STATE)
    state.figures, hook_pyplot = figure_recorder()
    saved, modules = [], {"sys": sys, "builtins": builtins}
    for top in ("builtins", "json", "os", "signal", "traceback", "inspect"):
        snapshot_pristine(saved, top, modules)
    state.restored = []
    state.restore_pristine = lambda: _log_restored(
        state.restored, restore_modules(modules) + restore_pristine(saved))
    sys.modules[NBGRADE_STATE] = state

    def numpy_hook(numpy):
        seed_numpy(seed)(numpy)
        snapshot_pristine(saved, "numpy", modules)

    def torch_hook(torch):
        seed_torch(seed)(torch)
        snapshot_pristine(saved, "torch", modules)

    hooks = PostImportHooks({
        "numpy": numpy_hook,
        "torch": torch_hook,
        "torchvision.datasets": offline_mnist(mnist_root),
        "matplotlib.pyplot": hook_pyplot,
    })
    sys.meta_path.insert(0, hooks)


def preload(modules):
    """Import what the notebook will import anyway (its hooks fire now), outside every cell's time limit."""
    import importlib

    for name in modules:
        try:
            importlib.import_module(name)
        except Exception:
            pass


def report_identity(state):
    """Tell the grader (before any student code runs) which objects are the state, to be checked before each probe."""
    import secrets

    state.nonce = secrets.randbits(62)  # with the ids: a replacement would need the same address and the nonce
    print(f"nbgrade-state {id(state)} {id(state.restore_pristine)} {id(state.figures)} {state.nonce}")


install(NBGRADE_SEED, NBGRADE_MNIST_ROOT, NBGRADE_OUTPUT_CAP)
report_identity(sys.modules[NBGRADE_STATE])
preload(NBGRADE_PRELOAD)
