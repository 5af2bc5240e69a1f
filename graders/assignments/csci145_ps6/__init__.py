"""csci145-ps6, CSCI 145 Problem Set 6: MNIST, logistic regression, a Gaussian-kernel model, a depth-ℓ MLP.

The declaration below is everything the engine knows about this assignment; the checks and their
catalogue of wrong formulas are in :mod:`.rubric`, the kernel-side probe text in ``probes.py``.
"""

from __future__ import annotations

from pathlib import Path

from graders.assignment import AssignmentSpec, AutograderBudget, ReferenceRun, Threshold
from graders.assignments.csci145_ps6.rubric import RUBRIC, hidden_inputs

PROJECT = Path(__file__).resolve().parents[3]
"""The checkout (the product keeps templates in ``student_template/`` at its top)."""

ASSIGNMENT = AssignmentSpec(
    id="csci145-ps6",
    title="CSCI 145 Problem Set 6",
    package=__name__,
    rubric=RUBRIC,
    hidden_inputs=hidden_inputs,
    markers=("gaussian_kernel", "K_train", "K_test", "kernel_model", "logreg_model", "logreg_losses",
             "make_mlp", "sigmoid_derivative", "CSCI 145", "Problem Set 6", "Reparameterization"),
    contract_names=("train_set", "test_set", "train_loader", "test_loader", "logreg_model", "logreg_losses",
                    "gaussian_kernel", "K_train", "K_test", "kernel_model", "sigmoid_derivative", "make_mlp",
                    "train_losses", "test_losses"),
    budget=AutograderBudget(notebook_seconds=300, cell_seconds=150, probe_seconds=20, container_memory_mb=768,
                            measured=ReferenceRun(limit_mb=768, cpu=0.5, peak_mb=659, seconds=54, runs=6)),
    thresholds=(Threshold("1B.test_accuracy", 0.70), Threshold("1C.train_accuracy", 0.90),
                Threshold("1C.test_accuracy", 0.50)),
    reference_module="reference.csci145_ps6",
    reference_notebook="notebooks/csci145-ps6.ipynb",
    reference_answers="answers/csci145-ps6",
    calibration="data/calibration_csci145-ps6.json",
    template=PROJECT / "student_template" / "csci145-ps6.ipynb",
)
