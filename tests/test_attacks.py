"""Attacks by a student who has read the grader's source (issue 16), as black-box end-to-end tests.

Each test grades one small hostile notebook with :func:`graders.grade_submission` and checks a
*host-side* invariant (a canary outside the sandbox is untouched, nothing outside the sandbox's
temporary folders becomes owned by a sandbox uid, the grader's memory and the host's disk stay
bounded, results.json is valid, the attack earns no points). Every attack prints an
``ATTACK-…`` line from inside the kernel; the tests require it, so that a test cannot pass merely
because the attack code crashed.

The notebooks are built in ``tests/attack_notebooks.py``.
"""

from __future__ import annotations

import glob
import json
import os
import secrets
import tempfile
from dataclasses import replace
from pathlib import Path

import pytest

import graders.grade
from graders.grade import grade_submission
from tests.attack_notebooks import (
    ALLOWED_DEVICES,
    GraderMemory,
    HostCanary,
    DiskSampler,
    cross_part_figure_cells,
    MALFORMED_MESSAGES,
    device_cells,
    display_id_fan_out_cells,
    exfiltrate_cells,
    exfiltrate_payload,
    disk_fill_cells,
    forged_figure_cells,
    hidden_data_cells,
    malformed_message_cells,
    image_key,
    link_race_cells,
    plant_cells,
    printed,
    printed_json,
    privilege_cells,
    probe_bloat_cells,
    sandbox_owned,
    surrogate_notebook_bytes,
    uncounted_output_cells,
    widget_state_cells,
    config,
    grade,
    needs_root,
)
from tests.conftest import REPO
from tests.hostile_corpus import CORRECT_2A, part_scores, valid_results

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="the sandbox and these checks need Linux"),
]


def check_scores(result, part: str, words: str) -> list[float]:
    """Scores of the part's checks whose description contains ``words``."""
    found = [c.score for c in result.part(part).checks if words in c.description]
    assert found, f"no {part} check mentions {words!r}: {[c.description for c in result.part(part).checks]}"
    return found


def killed(result) -> bool:
    """The kernel died in a cell (the attack's kill), so the grader had to start another one."""
    return any(issue.status == "killed" for issue in result.execution.issues)


def host_roots(*extra: Path) -> list[tuple[Path, int]]:
    """Host places an escaped write would land in (depth-limited), plus ``extra`` in full."""
    roots = [(Path("/tmp"), 1), (Path("/var/tmp"), 1), (Path("/root"), 2), (REPO, 3), (Path("/dev/shm"), 1), (Path("/work"), 1)]
    return roots + [(path, 50) for path in extra]


# ---------------------------------------------------------------------------------------------
# 1. Code planted by the notebook must never run outside the sandbox
# ---------------------------------------------------------------------------------------------
@needs_root
def test_planted_modules_and_pth_files_never_run_outside_the_sandbox(tmp_path):
    token = secrets.token_hex(6)
    result, out = grade(plant_cells(token), tmp_path)
    planted = printed_json(out, "ATTACK-PLANTED")
    assert planted["in_cwd"] > 0, planted  # the attack did plant into its working directory
    assert killed(result), f"the attack did not kill its kernel: {result.execution}"
    pwned = sorted(glob.glob(f"/tmp/nbgrade-pwned-{token}-*") + glob.glob(f"/var/tmp/nbgrade-pwned-{token}-*"))
    evidence = {p: Path(p).read_text()[:300] for p in pwned[:5]}
    for path in pwned:
        os.unlink(path)
    assert not pwned, f"code planted by the notebook ran on the host: {evidence}"
    valid_results(out)
    assert part_scores(result)["2A"] == 5.0, result.execution


@needs_root
def test_no_program_in_the_sandbox_can_gain_privileges(tmp_path):
    result, out = grade(privilege_cells(), tmp_path)
    report = printed_json(out, "ATTACK-PRIVILEGES")
    assert report["uid"] in range(61000, 65000), report  # the kernel runs as a sandbox uid
    assert int(report["cap_effective"] or "0", 16) == 0, report
    assert report["no_new_privs"] == "1" or not report["setuid_programs_in_effect"], (
        f"setuid programs take effect in the sandbox (no nosuid mount, no no_new_privs): {report}")
    valid_results(out)


# ---------------------------------------------------------------------------------------------
# 2. Links and races: the grader must never follow a link the sandbox planted
# ---------------------------------------------------------------------------------------------
@needs_root
@pytest.mark.parametrize("mode", ["kill", "probes", "everything"])
def test_symlinks_swapped_in_by_a_thread_never_redirect_the_grader(mode, tmp_path):
    canary = HostCanary.create("/root")
    before_state = canary.state()
    roots = host_roots(canary.directory, tmp_path)
    owned_before = sandbox_owned(roots)
    try:
        result, out = grade(link_race_cells(canary.file, canary.directory, mode), tmp_path)
        swapped = printed_json(out, "ATTACK-SWAPPED")
        assert swapped["count"] > 0, swapped  # the thread did replace entries with links
        assert mode == "probes" or killed(result), f"the attack did not kill its kernel: {result.execution}"
        after_state = canary.state()
        owned = sandbox_owned(roots) - owned_before
    finally:
        canary.remove()
    assert after_state == before_state, f"the host canary changed (uid, gid, mode, sha1): {before_state} → {after_state}"
    assert not owned, f"host paths became owned by a sandbox uid: {sorted(owned)[:20]}"
    valid_results(out)


# ---------------------------------------------------------------------------------------------
# 3. Hidden data and forged observations
# ---------------------------------------------------------------------------------------------
def recording_hidden_inputs(monkeypatch) -> list[dict]:
    """Record the hidden inputs the grader draws (with its own function) in each grading."""
    used: list[dict] = []
    original = graders.grade.get_assignment

    def recording(assignment_id):
        assignment = original(assignment_id)

        def hidden_inputs(seed, root):
            drawn = assignment.hidden_inputs(seed, root)
            used.append(drawn)
            return drawn

        return replace(assignment, hidden_inputs=hidden_inputs)

    monkeypatch.setattr(graders.grade, "get_assignment", recording)
    return used


@needs_root
def test_held_back_digits_cannot_be_read_or_looked_up_in_the_sandbox(tmp_path, monkeypatch, mnist_root):
    from graders.mnist import load_mnist_arrays

    used = recording_hidden_inputs(monkeypatch)  # the held-back digits the grader actually draws, with its own function
    test_images, _ = load_mnist_arrays(train=False, root=mnist_root)  # every held-back digit is one of these
    candidates = {image_key(image) for image in test_images}
    result, out = grade(hidden_data_cells(candidates), tmp_path, config(cell_timeout=90, total_timeout=200))
    assert used, "could not observe the grader's hidden inputs"
    held_back = {image_key(image) for image in used[-1]["1B"]["images"]}
    scan = printed_json(out, "ATTACK-SCAN")
    assert scan["image_files"], f"the scan found no MNIST at all (did it run?): {scan}"
    readable = held_back & set(scan["found"])
    assert not readable, f"{len(readable)} of the {len(held_back)} held-back 1B digits are readable in the sandbox: {scan['image_files']}"
    accuracy = check_scores(result, "1B", "test-accuracy")
    assert accuracy == [0.0], f"a lookup 'model' earned the held-back accuracy points ({scan['labelled_files']})"
    valid_results(out)


@needs_root
def test_held_back_digits_do_not_leak_to_the_student_through_error_messages(tmp_path, monkeypatch):
    used = recording_hidden_inputs(monkeypatch)
    cfg = replace(config(), write_report=True)
    result, out = grade(exfiltrate_cells(), tmp_path, cfg)
    assert printed(out, "ATTACK-EXFILTRATE"), "the exfiltrating model was not defined"
    assert used, "could not observe the grader's hidden inputs"
    payload = exfiltrate_payload(used[-1]["1B"]["images"])
    pieces = {payload[:48], payload.replace("+", "_").replace("/", "_").replace("=", "")[:48]}
    student_files = [out / "results.json", *([out / "report.html"] if (out / "report.html").exists() else [])]
    for path in student_files:
        text = path.read_text(errors="replace")
        squeezed = "".join(text.split())  # the digits may come back in words separated by spaces
        leaked = [piece for piece in pieces if piece in text or piece in squeezed]
        assert not leaked, f"{path.name} shows the student the held-back digits their model was fed ({len(payload)} characters)"
    valid_results(out)


@pytest.mark.parametrize("mode", ["replace_module", "mutate_closure"])
def test_forged_figure_records_earn_no_figure_points(mode, tmp_path):
    result, out = grade(forged_figure_cells(mode), tmp_path)
    assert printed(out, "ATTACK-FORGED"), "the forging cell did not run"
    credited = {p.id: [(c.description, c.score) for c in p.checks if "figure" in c.description and c.score > 0]
                for p in result.parts}
    assert check_scores(result, "1B", "figure") == [0.0], f"1B's 10-image figure was credited though none was drawn: {credited}"
    assert all(s == 0.0 for s in check_scores(result, "2C", "figure")), f"2C's curves were credited though none was drawn: {credited}"
    assert not any(credited.values()), f"figure points without a figure: {credited}"
    # A replaced grader state voids everything observed after it (README: sandbox); a mutated list only its figures.
    assert part_scores(result)["2A"] == (0.0 if mode == "replace_module" else 5.0)
    valid_results(out)


def test_a_figure_of_one_part_does_not_earn_another_parts_figure_points(tmp_path):
    result, out = grade(cross_part_figure_cells(), tmp_path)
    assert printed(out, "ATTACK-1C-FIGURE"), "the 1C figure was not drawn"
    assert all(s > 0 for s in check_scores(result, "1C", "figure")), "the 1C figure was not recorded (attack did not happen)"
    assert check_scores(result, "1B", "figure") == [0.0], "1C's figure earned 1B's figure points though 1B's cell crashed"
    valid_results(out)


# ---------------------------------------------------------------------------------------------
# 4. Exhaustion
# ---------------------------------------------------------------------------------------------
def test_bloated_probe_outputs_keep_the_graders_memory_bounded(tmp_path):
    (tmp_path / "warm").mkdir()
    grade([*CORRECT_2A, "import torch"], tmp_path / "warm")  # the grader's own imports and caches, before measuring
    with GraderMemory() as memory:
        result, out = grade(probe_bloat_cells(), tmp_path, config(probe_timeout=40))
    bloat = printed_json(out, "ATTACK-BLOAT")
    assert bloat["values_json_bytes"] > 5_000_000 and bloat["npy_bytes"] > 70_000_000, bloat  # the patches were live
    assert memory.growth < 300, f"the grader's own memory grew by {memory.growth:.0f} MB while reading the probes' files"
    valid_results(out)


def test_output_hidden_in_metadata_nesting_or_keys_keeps_the_graders_memory_bounded(tmp_path):
    (tmp_path / "warm").mkdir()
    grade([*CORRECT_2A, "print('warm')"], tmp_path / "warm")  # the grader's own imports and caches, before measuring
    with GraderMemory() as memory:
        result, out = grade(uncounted_output_cells(), tmp_path, config(cell_timeout=90, total_timeout=180))
    sent = printed_json(out, "ATTACK-UNCOUNTED")
    assert min(sent["sent"].values()) > 0, sent  # the messages did leave the kernel
    assert memory.growth < 300, f"the grader's own memory grew by {memory.growth:.0f} MB on output its caps did not count"
    assert (out / "executed.ipynb").stat().st_size < 50 * 2**20, "the executed notebook kept the uncounted output"
    valid_results(out)
    assert part_scores(result)["2A"] == 5.0


def test_an_update_to_a_shared_display_id_keeps_the_graders_memory_and_files_bounded(tmp_path):
    (tmp_path / "warm").mkdir()
    grade([*CORRECT_2A, "print('warm')"], tmp_path / "warm")  # the grader's own imports and caches, before measuring
    with GraderMemory() as memory:
        result, out = grade(display_id_fan_out_cells(), tmp_path)
    assert printed(out, "ATTACK-DISPLAY-ID"), "the fan-out cell did not run"
    size = (out / "executed.ipynb").stat().st_size
    assert size < 50 * 2**20, f"one uncounted update_display_data became {size / 2**20:.0f} MB of executed notebook"
    assert memory.growth < 300, f"the grader's own memory grew by {memory.growth:.0f} MB"
    valid_results(out)
    assert part_scores(result)["2A"] == 5.0


def test_widget_state_sent_by_the_kernel_keeps_the_graders_memory_bounded(tmp_path):
    (tmp_path / "warm").mkdir()
    grade([*CORRECT_2A, "print('warm')"], tmp_path / "warm")  # the grader's own imports and caches, before measuring
    with GraderMemory() as memory:
        result, out = grade(widget_state_cells(), tmp_path)
    assert printed(out, "ATTACK-WIDGETS"), "the widget cell did not run"
    assert memory.growth < 300, f"the grader's own memory grew by {memory.growth:.0f} MB holding widget state"
    assert (out / "executed.ipynb").stat().st_size < 50 * 2**20
    valid_results(out)
    assert part_scores(result)["2A"] == 5.0


@pytest.mark.parametrize("case", sorted(MALFORMED_MESSAGES))
def test_a_malformed_kernel_message_does_not_stop_the_grading(case, tmp_path):
    result, out = grade(malformed_message_cells(case), tmp_path)
    valid_results(out)
    assert printed(out, "ATTACK-MALFORMED"), f"the cell's run was lost: {result.messages} {result.instructor_detail[-300:]}"
    assert printed(out, "ATTACK-AFTER-MALFORMED"), "the cells after the malformed message did not run"
    assert part_scores(result)["2A"] == 5.0, (result.messages, result.instructor_detail[-500:])


@needs_root
def test_filling_the_disk_is_stopped_long_before_the_host_runs_short(tmp_path):
    sandbox_filesystem = tempfile.gettempdir()  # where Workspace.create puts the sandbox folders
    with DiskSampler(sandbox_filesystem) as disk:
        result, out = grade(disk_fill_cells(), tmp_path, config(cell_timeout=60, total_timeout=150))
    fill = printed_json(out, "ATTACK-FILL")
    assert fill["written_mb"] >= 100, fill  # the notebook did write something
    assert disk.drop_mb < 1024, f"the host's free disk dropped by {disk.drop_mb:.0f} MB ({fill})"
    valid_results(out)
    assert part_scores(result)["2A"] == 5.0


@needs_root
def test_the_sandbox_sees_only_harmless_devices(tmp_path):
    result, out = grade(device_cells(), tmp_path)
    devices = printed_json(out, "ATTACK-DEVICES")
    assert "null" in devices["entries"], devices  # /dev was listed
    extra = sorted(set(devices["entries"]) - ALLOWED_DEVICES)
    assert not extra, f"/dev in the sandbox holds more than the harmless devices: {extra[:40]}"
    harmless = {f"/dev/{name}" for name in ALLOWED_DEVICES} | {"/dev/fd/0", "/dev/fd/1", "/dev/fd/2"}
    opened = {path: modes for path, modes in devices["opened"].items() if path not in harmless}
    assert not opened, f"the sandbox opened devices: {opened}"
    valid_results(out)


# ---------------------------------------------------------------------------------------------
# 5. Results survive lone surrogates and NULs
# ---------------------------------------------------------------------------------------------
def test_lone_surrogates_and_nuls_still_give_valid_results(tmp_path):
    path = tmp_path / "submission.ipynb"
    path.write_bytes(surrogate_notebook_bytes())
    out = tmp_path / "submission.graded"
    result = grade_submission(path, config(), out_dir=out)
    raw = (out / "results.json").read_bytes()
    text = raw.decode("utf-8")  # strict: no lone surrogate was written as bytes
    data = json.loads(text)
    json.dumps(data, ensure_ascii=False).encode("utf-8")  # strict: no lone surrogate survives as an escape either
    assert data["tests"], data
    valid_results(out)
    assert result.status not in ("harness_error", "invalid_submission"), (result.status, result.messages)
    assert printed(out, "ATTACK-SURROGATE"), "the first cell did not run"
    assert part_scores(result)["2A"] == 5.0, (part_scores(result), result.execution)
