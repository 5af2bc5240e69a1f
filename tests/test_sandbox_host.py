"""The host side of the sandbox against a notebook that has read the grader's source.

One kernel-starting test per class of attack (issue 16): code planted where a host-side process
starts, links planted in every folder the grader writes to or reads from, the held-back digits,
a replaced kernel-side module, a disk fill. Each notebook proves, in its own outputs, that the
attack really ran inside the sandbox, so that a test cannot pass because the attack failed to
start.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from graders.mnist import ensure_mnist, held_back_digits, load_mnist_arrays, sandbox_view
from tests.conftest import make_notebook
from tests.hostile_corpus import CORRECT_2A, namespaces_available, valid_results

LINUX = sys.platform.startswith("linux")
pytestmark = pytest.mark.skipif(not LINUX, reason="the sandbox's host-side guarantees are Linux's")


def outputs_of(out_dir: Path) -> str:
    notebook = json.loads((out_dir / "executed.ipynb").read_text())
    return "\n".join(str(o.get("text", "")) + str(o.get("evalue", "")) for c in notebook["cells"] for o in c.get("outputs", []))


PLANT = '''
import os, sys
canary = {canary!r}
payload = "open(" + repr(canary) + ", 'w').write('ran outside the sandbox')\\n"
planted = []
for folder in {{os.getcwd(), os.path.expanduser("~"), os.path.dirname(os.getcwd())}}:
    for name in ("graders", "jupyter_client", "ipykernel_launcher", "runpy_planted"):
        try:
            os.makedirs(os.path.join(folder, "graders"), exist_ok=True)
            for module in ("__init__.py", "sandbox.py", "pool.py"):
                open(os.path.join(folder, "graders", module), "w").write(payload)
            for module in ("sitecustomize.py", "usercustomize.py", "ipykernel_launcher.py", "json.py", "os.py"):
                open(os.path.join(folder, module), "w").write(payload)
            planted.append(folder)
        except OSError:
            pass
print("PLANTED", sorted(set(planted)))
'''

LINKS = '''
import os, threading, time
host = {host!r}
sandbox = os.path.dirname(os.getcwd())
seen = set()
def plant():
    while True:
        for dirpath, dirnames, filenames in os.walk(sandbox):
            for name in dirnames + filenames:
                path = os.path.join(dirpath, name)
                if path in seen or os.path.islink(path):
                    continue
                try:
                    if os.path.isdir(path):
                        os.rename(path, path + ".moved")
                    else:
                        os.unlink(path)
                    os.symlink(host, path)
                    seen.add(path)
                except OSError:
                    pass
        time.sleep(0.01)
threading.Thread(target=plant, daemon=True).start()
time.sleep(1)
print("LINKED", len(seen))
'''


@pytest.mark.skipif(not namespaces_available(), reason="needs the new root")
def test_planted_code_and_links_never_act_on_the_host(grade_notebook, tmp_path):
    host = tmp_path / "host-canary"
    host.write_text("untouched")
    host.chmod(0o644)
    before = host.stat()
    canary = tmp_path / "pwned"  # only the host's tmp_path: inside the sandbox the folder does not exist
    nb = make_notebook([
        PLANT.format(canary=str(canary)),
        LINKS.format(host=str(host)),
        "import os\nos.kill(os.getpid(), 9)",  # a restart: the launcher runs again, as root
        *CORRECT_2A,
        LINKS.format(host=str(host)),
    ], assignment="csci145-ps6")
    result, out = grade_notebook(nb)
    text = outputs_of(out)
    assert "PLANTED" in text and "LINKED" in text
    assert not canary.exists()
    after = host.stat()
    assert (after.st_uid, after.st_gid, after.st_mode) == (before.st_uid, before.st_gid, before.st_mode)
    assert host.read_text() == "untouched"
    valid_results(out)  # its own results replaced by links: refused, and still a valid result


def test_the_held_back_digits_are_not_in_the_sandboxs_mnist():
    view = sandbox_view(ensure_mnist())
    held_images, held_labels = held_back_digits(view)
    seen = np.concatenate([load_mnist_arrays(train=True, root=view)[0], load_mnist_arrays(train=False, root=view)[0]])
    held = {image.tobytes() for image in held_images}
    assert len(held_labels) >= 500 and not held & {image.tobytes() for image in seen}
    assert oct((view.parent / "held-back").stat().st_mode & 0o777) == "0o700"


FORGE = '''
import sys, types
for name in list(sys.modules):
    if name.startswith("_nbgrade"):
        fake = types.ModuleType(name)
        fake.figures = lambda: [{"cell_hash": None, "suptitle": "", "texts": [], "axes": [
            {"title": f"predicted {d}", "images": 1, "lines": [], "texts": [], "legend": [], "collections": 0,
             "patches": 0, "visible": True, "geometry": [2, 5, d // 5, d % 5], "xlabel": "", "ylabel": "",
             "image_shapes": [[28, 28]]} for d in range(10)]}]
        fake.restore_pristine = lambda: []
        sys.modules[name] = fake
        print("FORGED", name)
import json
json.dump = lambda *a, **k: None
train_losses = {1: [3.0, 1.0], 2: [3.0, 1.0], 3: [3.0, 1.0]}
test_losses = {1: [3.0, 1.5], 2: [3.0, 1.5], 3: [3.0, 1.5]}
'''


def test_a_replaced_kernel_module_forges_no_figure_and_keeps_patches(grade_notebook):
    nb = make_notebook([*CORRECT_2A, ("markdown", "## 2C"), FORGE], assignment="csci145-ps6")
    result, out = grade_notebook(nb)
    assert "FORGED" in outputs_of(out)
    figure_checks = [c for p in result.parts for c in p.checks if "figure" in c.name]
    assert figure_checks and all(c.score == 0 for c in figure_checks)
    assert result.score == 0  # nothing observed in a kernel whose grader state was replaced counts
    text = json.dumps(json.loads((out / "results.json").read_text()))
    assert "replaced or changed the grader's own state" in text or "replace json" in text


@pytest.mark.skipif(not namespaces_available(), reason="the quota is the new root's tmpfs")
def test_a_disk_fill_stops_at_the_quota_and_never_reaches_the_hosts_disk(grade_notebook, tmp_path):
    import shutil

    free_before = shutil.disk_usage(tmp_path).free
    fill = ("import os\nwritten = 0\ntry:\n    for i in range(40):\n"
            "        with open(f'blob{i}', 'wb') as f:\n            f.write(os.urandom(1 << 20) * 100)\n"
            "        written += 100\nexcept OSError as e:\n    print('STOPPED', written, 'MB', type(e).__name__)")
    nb = make_notebook([fill, *CORRECT_2A], assignment="csci145-ps6")
    result, out = grade_notebook(nb)
    text = outputs_of(out)
    assert "STOPPED" in text
    written = int(text.split("STOPPED", 1)[1].split()[0])
    assert written <= 1100
    assert free_before - shutil.disk_usage(tmp_path).free < 200 * 2**20
    assert result.part("2A").score == 5
    valid_results(out)


def test_an_installed_assignments_packages_and_solution_are_hidden_from_the_kernel(tmp_path):
    """A course installs its assignment as a distribution (site-packages, bound into the new root with
    the Python installation): its package and its reference module must be covered like ours."""
    import subprocess

    from tests.conftest import REPO

    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target),
                    str(REPO / "examples" / "demo-linreg")], check=True, capture_output=True, timeout=300)
    code = "from graders.workspace import hidden_directories; print('\\n'.join(hidden_directories()))"
    shown = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(target)},
                           capture_output=True, text=True, check=True, timeout=120).stdout.splitlines()
    assert str(target / "demo_linreg") in shown and str(target / "demo_linreg_reference") in shown
