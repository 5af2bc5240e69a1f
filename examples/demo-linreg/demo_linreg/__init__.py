"""demo-linreg, a small example assignment shipped as its own distribution (docs/authoring.md).

LR1 the mean squared error, LR2 its gradient by hand (checked against torch autograd), LR3 gradient
descent with a loss-curve figure. The declaration below is everything the engine knows about it;
the checks are in :mod:`.rubric`, the kernel-side probe text in ``probes.py``, the student template in
``template/``. The reference solution and the executed reference notebook are in the sibling package
``demo_linreg_reference`` (secret: never in a student bundle).
"""

from __future__ import annotations

from pathlib import Path

from graders.assignment import AssignmentSpec, AutograderBudget, ReferenceRun
from demo_linreg.rubric import RUBRIC, hidden_inputs

HERE = Path(__file__).resolve().parent

ASSIGNMENT = AssignmentSpec(
    id="demo-linreg",
    title="Demo: linear regression warm-up",
    package=__name__,
    rubric=RUBRIC,
    hidden_inputs=hidden_inputs,
    markers=("mse_loss", "mse_gradient", "fit_linreg", "linear regression warm-up"),
    contract_names=("mse_loss", "mse_gradient", "fit_linreg"),
    # benchmarks/gradescope_memory.py on the reference notebook, 3 runs (README.md of this example).
    budget=AutograderBudget(notebook_seconds=120, cell_seconds=60, probe_seconds=30, container_memory_mb=768,
                            measured=ReferenceRun(limit_mb=768, cpu=0.5, peak_mb=385, seconds=12, runs=3)),
    reference_module="demo_linreg_reference",
    # Paths of reference material are relative to the reference module's top-level package
    # (demo_linreg_reference/, installed with it as package data); an absolute path is kept as it is.
    reference_notebook="demo-linreg.ipynb",
    template=HERE / "template" / "demo-linreg.ipynb",
)
