"""Attacks, second round (issue 16): a student who has read the grader's source, black-box end to end.

Each test grades one small hostile notebook (``tests/attack_notebooks2.py``) with
:func:`graders.grade_submission`, requires the ``ATTACK-…`` line the notebook prints from inside the
kernel (so that a test cannot pass because the attack did not run), and checks a host-side
invariant or a guarantee README.md ("Sandbox and limits") states.
"""

from __future__ import annotations

import os
import secrets
import time

import pytest

from graders.grade import grade_submission
from tests.attack_notebooks import config, grade, needs_root, printed, printed_json
from tests.attack_notebooks2 import (
    FORGED_TABLE_LINE,
    autograd_p1_cells,
    emptied_state_cells,
    held_back_in_reach_cells,
    host_shmem_mb,
    processes_named,
    remove_sysv_segment,
    replaced_state_cells,
    shared_memory_cells,
    survivor_cells,
    sysv_cells,
    sysv_segments,
    terminal_forge_cells,
    warm_up_killer_cells,
)
from tests.conftest import make_notebook, write_notebook
from tests.hostile_corpus import Sampler, part_scores, valid_results

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="the sandbox and these checks need Linux"),
]


def killed_for_memory(result) -> bool:
    return any(issue.status == "killed" and "memory" in issue.summary for issue in result.execution.issues)


class ShmemSampler(Sampler):
    """The host's peak Shmem growth (MB) while grading runs."""

    def __init__(self) -> None:
        super().__init__(host_shmem_mb, 0.1)

    @property
    def growth(self) -> float:
        return self.extreme - self.before


# ---------------------------------------------------------------------------------------------
# 1. The memory cap counts every kind of RAM the kernel can hold
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["mmap_shared", "memfd", "deleted_shm_file", pytest.param("socket_buffers", marks=pytest.mark.xfail(
    reason="open (README, sandbox): bytes queued in Unix sockets are kernel memory no process map shows; bounded only "
           "by open files × processes", strict=False))])
def test_ram_held_as_shared_memory_counts_against_the_memory_cap(mode, tmp_path):
    """README: 'memory (anonymous memory of the kernel's processes … *plus* every file it wrote)'.

    A shared anonymous map (Python's ``mmap.mmap(-1, n)`` default) and a memfd are shmem: neither
    anonymous memory (Pss_Anon) nor a file on the sandbox's tmpfs. Held at 3× the cap, the kernel
    must be stopped.
    """
    memory_mb = 640
    with ShmemSampler() as shmem:
        result, out = grade(shared_memory_cells(mode, 3 * memory_mb), tmp_path, config(memory_mb=memory_mb))
    started = printed_json(out, "ATTACK-SHMEM-START")
    assert started["mb"] == 3 * memory_mb, started
    held = printed(out, "ATTACK-SHMEM-HELD")
    alive = printed(out, "ATTACK-SHMEM-ALIVE")
    # Files in /dev/shm are the sandbox's tmpfs, at most half the cap: the writes stop there (ENOSPC) instead.
    quota = any("No space left on device" in issue.summary for issue in result.execution.issues)
    assert held or killed_for_memory(result) or quota, "the notebook neither took the memory nor was stopped for it"
    assert not alive and (killed_for_memory(result) or quota), (
        f"the kernel held RAM as {mode} for 4 s under a {memory_mb} MB cap ({held[-1:]}) "
        f"(host Shmem grew by {shmem.growth:.0f} MB; issues: {[i.summary for i in result.execution.issues]})")
    valid_results(out)
    assert part_scores(result)["2A"] == 5.0


# ---------------------------------------------------------------------------------------------
# 2. P1 with autograd unavailable
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["kept_grad", pytest.param("kept_engine", marks=pytest.mark.xfail(
    reason="open (README, sandbox): a notebook that keeps autograd's engine object itself and calls it directly is "
           "in the probe's own process; the autograd-free run cannot take it away", strict=False))])
def test_p1_gradients_from_autograd_references_kept_before_the_probe_earn_nothing(mode, tmp_path):
    """README: 'P1 is run with autograd unavailable … a function that needs autograd earns nothing'.

    The notebook keeps ``torch.autograd.grad`` and ``torch.enable_grad`` under its own names before
    any probe runs (``kept_grad``), or autograd's engine object and the C switch for recording
    (``kept_engine``: ``Variable._execution_engine``, ``torch._C._set_grad_enabled``); its P1 function
    turns recording back on and differentiates with what it kept.
    """
    nb = make_notebook(autograd_p1_cells(mode), assignment="ece685d-hw2")
    path = write_notebook(nb, tmp_path / "submission.ipynb")
    out = tmp_path / "submission.graded"
    result = grade_submission(path, config("ece685d-hw2", cell_timeout=60, total_timeout=200, probe_timeout=60), out_dir=out)
    attack = printed_json(out, "ATTACK-AUTOGRAD")
    assert attack["finite"] and len(attack["keys"]) == 6, attack  # autograd worked with the entry points replaced
    earned = {c.name: c.score for c in result.part("P1").checks if c.score > 0}
    assert not earned, f"a P1 function that differentiates with autograd earned {sum(earned.values()):g} points: {earned}"
    valid_results(out)


# ---------------------------------------------------------------------------------------------
# 3. The prelude's state pin
# ---------------------------------------------------------------------------------------------
def test_a_replaced_state_is_caught_even_when_json_dump_erases_the_flag(tmp_path):
    """README: 'a notebook that replaces or changes the state itself is caught by that identity and
    scores 0 on every part observed after it'. The runtime restores nothing once it sees the state
    replaced, so the notebook's json.dump is the one that writes the probes' records: it drops
    ``tampered``. The verdict must not depend on a record the tampering notebook writes."""
    result, out = grade(replaced_state_cells(), tmp_path)
    attack = printed_json(out, "ATTACK-STATE-REPLACED")
    assert attack["replaced"], attack  # the state was found and replaced
    valid_results(out)
    # The README no longer claims the flag survives a notebook that rewrites the probes' own output
    # (in-process, nothing can guarantee that); what it claims, and this pins, is that tampering earns
    # nothing: the only points are those of the notebook's correct 2A, whatever the records say.
    scores = part_scores(result)
    assert scores["2A"] in (0.0, 5.0) and sum(v for k, v in scores.items() if k != "2A") == 0, (
        f"the state was replaced and the 'tampered' flag erased by a patched json.dump: points beyond the correct 2A ({scores})")


def test_emptying_the_states_saved_originals_in_place_leaves_no_patch_in_the_probes(tmp_path):
    """README: the prelude 'puts back library functions … the notebook replaced before any probe runs'.

    The notebook keeps the state object and its functions (so the pin's ids and nonce match) but
    empties, in place, the list and dict of originals its ``restore_pristine`` closes over; its
    json.dump then rewrites every probe's record. A correct 2A must still score (its record is the
    probe's, not the notebook's), or the tampering must be caught and said.
    """
    result, out = grade(emptied_state_cells(), tmp_path)
    attack = printed_json(out, "ATTACK-STATE-EMPTIED")
    assert attack["emptied"] and any(n > 0 for _kind, n in attack["emptied"]), attack
    valid_results(out)
    scores = part_scores(result)  # it may cost the notebook its own 2A; it must earn nothing else
    assert scores["2A"] in (0.0, 5.0) and sum(v for k, v in scores.items() if k != "2A") == 0, (
        "the notebook emptied the grader's saved originals in place and its json.dump rewrote the probes' records: "
        f"points beyond the correct 2A ({scores})")


# ---------------------------------------------------------------------------------------------
# 4. No process of the sandbox outlives grading
# ---------------------------------------------------------------------------------------------
@needs_root
def test_a_double_forked_renamed_process_does_not_survive_grading(tmp_path):
    name = "nbg" + secrets.token_hex(5)
    result, out = grade(survivor_cells(name), tmp_path)
    attack = printed_json(out, "ATTACK-SURVIVOR")
    assert attack["pid_in_namespace"], attack
    time.sleep(1)
    left = processes_named(name)
    for pid, _uid in left:
        try:
            os.kill(pid, 9)
        except OSError:
            pass
    assert not left, f"a process the notebook started outlived grading: {left}"
    valid_results(out)
    assert part_scores(result)["2A"] == 5.0


# ---------------------------------------------------------------------------------------------
# 5. Held-back digits: probed last
# ---------------------------------------------------------------------------------------------
@needs_root
def test_no_other_parts_probe_runs_once_the_held_back_digits_are_in_reach(tmp_path):
    """README: 'A part whose inputs are such data is probed last'. The 2A function answers wrongly
    when 1B's hidden inputs (the held-back digits) are readable in the sandbox while it is called."""
    result, out = grade(held_back_in_reach_cells(), tmp_path)
    attack = printed_json(out, "ATTACK-INPUTS")
    assert attack["inputs_folder"], attack  # the grader's inputs folder is where the function looks
    valid_results(out)
    assert part_scores(result)["2A"] == 5.0, (
        "2A's probe called the notebook's code while 1B's held-back digits were readable in the sandbox "
        f"({[c.message for c in result.part('2A').checks if c.score == 0][:2]})")


# ---------------------------------------------------------------------------------------------
# 6. The instructor's terminal table holds only the grader's lines
# ---------------------------------------------------------------------------------------------
def test_text_from_the_notebook_cannot_forge_lines_of_the_terminal_table(tmp_path):
    from graders.summary_table import format_result

    result, out = grade(terminal_forge_cells(), tmp_path)
    assert printed(out, "ATTACK-TERMINAL"), "the forging cell did not run"
    valid_results(out)
    table = format_result(result, out)
    rows = table.splitlines()
    totals = [row for row in rows if row.lstrip().startswith("total ")]
    assert len(totals) == 1 and FORGED_TABLE_LINE not in rows, f"the notebook forged rows of the terminal table:\n{table}"
    assert "\r" not in table, "a carriage return from the notebook reaches the terminal (it overwrites the row)"


# ---------------------------------------------------------------------------------------------
# 7. Nothing of the sandbox outlives it in the host's kernel: System V shared memory
# ---------------------------------------------------------------------------------------------
@needs_root
def test_system_v_shared_memory_made_in_the_sandbox_does_not_outlive_grading(tmp_path):
    """README: everything the kernel writes 'vanishes with the kernel' and the memory cap holds.

    The sandbox gets new mount, network and PID namespaces but shares the host's IPC namespace: a
    System V segment created there (mode 0666, 3× the memory cap, touched then detached) belongs to
    no process, so the watchdog never counts it, killing the sandbox's processes does not free it,
    and every user of the host (another sandbox included) can attach it.
    """
    key = 0x6E620000 + secrets.randbelow(0xFFFF)
    memory_mb = 640
    try:
        result, out = grade(sysv_cells(key, 3 * memory_mb), tmp_path, config(memory_mb=memory_mb))
        # The segment is mapped while it is touched: shared memory counts, so the kernel may be stopped first.
        stopped = killed_for_memory(result) and not printed(out, "ATTACK-SYSV")
        attack = {"shmid": 0, "errno": 0, "touched_mb": 0} if stopped else printed_json(out, "ATTACK-SYSV")
        left = [s for s in sysv_segments() if s["key"] == key or (61000 <= s["cuid"] < 65000)]
    finally:
        for segment in sysv_segments():
            if segment["key"] == key:
                remove_sysv_segment(segment["shmid"])
    assert attack["shmid"] >= 0 or attack["errno"], attack  # the call was made (refused is fine)
    assert not left, (f"a {attack['touched_mb']} MB System V segment made by the sandbox (mode 0666) is still in the "
                      f"host's kernel after grading: {left}")
    valid_results(out)
    assert part_scores(result)["2A"] == 5.0


# ---------------------------------------------------------------------------------------------
# 8. A kernel that dies while the grader prepares its checks still gives a graded result
# ---------------------------------------------------------------------------------------------
def test_a_kernel_that_dies_in_the_graders_warm_up_does_not_crash_the_observation(tmp_path):
    """A notebook near its memory cap dies the same way when the probes import torch. The grader
    must record why the parts were not observed, not fail with its own traceback (it reads
    ``/proc/<dead launcher>/root``)."""
    result, out = grade(warm_up_killer_cells(), tmp_path)
    assert printed(out, "ATTACK-WARM-UP"), "the hook was not installed"
    valid_results(out)
    detail = result.instructor_detail or ""
    assert "Traceback" not in detail, f"the grader's observation stage crashed:\n{detail[-1500:]}"
    message = " ".join(c.message for c in result.part("2A").checks)
    assert "kernel" in message, f"2A does not say that the kernel stopped: {message[:300]}"


# ---------------------------------------------------------------------------------------------
# 9. The grader's memory is bounded by what the kernel sends, whatever its shape
# ---------------------------------------------------------------------------------------------
def test_many_empty_outputs_keep_the_graders_memory_bounded(tmp_path):
    """README: output caps keep 'the grader never exhausted'. They count characters (12 for an empty
    display_data), while every output kept costs the grader kilobytes: ~48,000 empty outputs are
    ~1/10 of the notebook's 5,000,000-character cap."""
    from tests.attack_notebooks import GraderMemory
    from tests.attack_notebooks2 import tiny_output_cells
    from tests.hostile_corpus import CORRECT_2A as warm_cells

    (tmp_path / "warm").mkdir()
    grade([*warm_cells, "print('warm')"], tmp_path / "warm")  # the grader's own imports and caches, before measuring
    with GraderMemory() as memory:
        result, out = grade(tiny_output_cells(), tmp_path, config(cell_timeout=90, total_timeout=300))
    sent = printed_json(out, "ATTACK-TINY-OUTPUTS")
    assert sent["sent"] >= 40_000, sent
    valid_results(out)
    assert memory.growth < 300, (f"the grader's own memory grew by {memory.growth:.0f} MB on {sent['sent']} empty outputs "
                                 "(12 counted characters each)")
    assert part_scores(result)["2A"] == 5.0


# ---------------------------------------------------------------------------------------------
# 10. Nothing one grading leaves is seen by a later one with the same sandbox uid
# ---------------------------------------------------------------------------------------------
@needs_root
@pytest.mark.skipif(os.uname().machine != "x86_64", reason="the notebook calls add_key/keyctl by their x86_64 numbers")
def test_a_key_left_in_the_uids_keyring_is_not_seen_by_a_later_grading(tmp_path, monkeypatch):
    """README: the kernel 'cannot see other submissions'. Uids are claimed per grading and reused by later
    ones (a batch worker's slot); the user keyring of a uid lives in the host's kernel, not in any
    namespace the sandbox makes, so a note left by one submission is read by the next with that uid."""
    import graders.grade
    from graders.sandbox import SANDBOX_UID_BASE
    from tests.attack_notebooks2 import clear_user_keyring, keyring_cells

    slot = 3000 + secrets.randbelow(900)
    monkeypatch.setattr(graders.grade, "_slot", lambda: slot)  # two gradings one after the other on one slot
    token = "nbgrade-note-" + secrets.token_hex(8)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    try:
        _, out_a = grade(keyring_cells("leave", token), tmp_path / "a")
        left = printed_json(out_a, "ATTACK-KEYRING")
        _, out_b = grade(keyring_cells("find", token), tmp_path / "b")
        seen = printed_json(out_b, "ATTACK-KEYRING")
    finally:
        for offset in range(4):
            clear_user_keyring(SANDBOX_UID_BASE + (slot + offset) % 4000)
    assert left["result"] > 0 or left["errno"], left  # the first grading's call was made (refused is fine)
    assert seen["found"] != token, f"a later submission read what an earlier one left in the uid's keyring: {seen}"
    valid_results(out_b)
