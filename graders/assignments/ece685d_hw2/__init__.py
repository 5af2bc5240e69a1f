"""ece685d-hw2, ECE 685D HW2: residual-MLP backprop, a two-view MNIST dataset, gradient descent vs Newton.

The declaration below is everything the engine knows about this assignment; the checks and their
catalogue of wrong formulas are in :mod:`.rubric`, the kernel-side probe text in ``probes.py``.
"""

from __future__ import annotations

from pathlib import Path

from graders.assignment import AssignmentSpec, AutograderBudget, ReferenceRun, Threshold
from graders.assignments.ece685d_hw2.rubric import RUBRIC, hidden_inputs

PROJECT = Path(__file__).resolve().parents[3]
"""The checkout (the product keeps templates in ``student_template/`` at its top)."""

ASSIGNMENT = AssignmentSpec(
    id="ece685d-hw2",
    title="ECE 685D HW2",
    package=__name__,
    rubric=RUBRIC,
    hidden_inputs=hidden_inputs,
    markers=("residual_mlp_gradients", "MNISTTwoView", "two_view_dataset", "bce_loss", "bce_gradient",
             "bce_hessian", "histories", "ECE 685", "Residual MLP", "Multi-View", "Newton"),
    contract_names=("residual_mlp_gradients", "MNISTTwoView", "two_view_dataset", "bce_loss", "bce_gradient",
                    "bce_hessian", "histories"),
    budget=AutograderBudget(notebook_seconds=300, cell_seconds=150, probe_seconds=45, container_memory_mb=768,
                            measured=ReferenceRun(limit_mb=768, cpu=0.5, peak_mb=620, seconds=50, runs=6)),
    thresholds=tuple(Threshold(f"P3.final_accuracy.{method}", 0.90) for method in ("gd", "newton", "newton_diag")),
    reference_module="reference.ece685d_hw2",
    reference_notebook="notebooks/ece685d-hw2.ipynb",
    reference_answers="answers/ece685d-hw2",
    calibration="data/calibration_ece685d-hw2.json",
    template=PROJECT / "student_template" / "ece685d-hw2.ipynb",
)
