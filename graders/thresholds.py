"""Pass marks for trained figures: the CONTRACT's value, lowered below the reference's worst run.

An assignment declares its thresholds (:class:`graders.assignment.Threshold`) and a calibration
file in its own reference package (the top-level package of its ``reference_module``) holding
min / median / max of each figure over many seeds of the reference solution. A threshold is
never above the CONTRACT's and always ``MARGIN`` below the reference's worst calibrated run, so a
correct solution having an unlucky seed still passes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from graders.assignment import AssignmentSpec

MARGIN = 0.03
"""How far below the reference's worst run an accuracy threshold sits."""

@dataclass(frozen=True)
class CalibratedThreshold:
    key: str
    value: float
    """The pass mark in force."""
    contract: float
    reference_min: float | None
    reference_median: float | None

    def describe(self) -> str:
        if self.reference_min is None:
            return f"{self.value:.2f} (CONTRACT)"
        return (
            f"{self.value:.2f} (the reference solution scores {self.reference_min:.2f}–"
            f"median {self.reference_median:.2f} over calibration seeds)"
        )


def load_calibration(spec: AssignmentSpec) -> dict:
    """The assignment's calibration data (empty when it declares none or its reference package is not installed).

    A relative ``calibration`` is a resource of the assignment's own reference package
    (:attr:`~graders.assignment.AssignmentSpec.reference_package`); an absolute one is a file.
    """
    if spec.calibration is None:
        return {}
    try:
        if Path(spec.calibration).is_absolute():
            text = Path(spec.calibration).read_text()
        elif spec.reference_package is None:
            return {}
        else:
            text = resources.files(spec.reference_package).joinpath(*spec.calibration.split("/")).read_text()
    except (FileNotFoundError, ModuleNotFoundError, OSError, TypeError):
        return {}
    return json.loads(text)


def thresholds_for(spec: AssignmentSpec) -> dict[str, CalibratedThreshold]:
    calibration = load_calibration(spec)
    found = {}
    for declared in spec.thresholds:
        key, contract = declared.key, declared.contract
        stats = calibration.get(key)
        if isinstance(stats, dict) and "min" in stats:
            value = min(contract, round(float(stats["min"]) - MARGIN, 2))
            found[key] = CalibratedThreshold(key, value, contract, float(stats["min"]), float(stats["median"]))
        else:
            found[key] = CalibratedThreshold(key, contract, contract, None, None)
    return found
