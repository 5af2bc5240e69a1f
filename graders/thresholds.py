"""Pass marks for trained figures: the CONTRACT's value, lowered below the reference's worst run.

An assignment declares its thresholds (:class:`graders.assignment.Threshold`) and a calibration
file in the ``reference`` package holding min / median / max of each figure over many seeds of
the reference solution. A threshold is never above the CONTRACT's and always
``MARGIN`` below the reference's worst calibrated run, so a correct solution having an unlucky
seed still passes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources

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
    """The assignment's calibration data (empty when it declares none or the reference is not installed)."""
    if spec.calibration is None:
        return {}
    try:
        text = resources.files("reference").joinpath(*spec.calibration.split("/")).read_text()
    except (FileNotFoundError, ModuleNotFoundError, OSError):
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
