"""Pass marks for trained figures: the CONTRACT's value, lowered below the reference's worst run.

``reference/data/calibration_<assignment>.json`` holds min / median / max of each figure over
many seeds of the reference solution. A threshold is never above the CONTRACT's and always
``MARGIN`` below the reference's worst calibrated run, so a correct solution having an unlucky
seed still passes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources

MARGIN = 0.03
"""How far below the reference's worst run an accuracy threshold sits."""

CONTRACT_THRESHOLDS: dict[str, dict[str, float]] = {
    "csci145-ps6": {"1B.test_accuracy": 0.70, "1C.train_accuracy": 0.90, "1C.test_accuracy": 0.50},
    "ece685d-hw2": {
        "P3.final_accuracy.gd": 0.90,
        "P3.final_accuracy.newton": 0.90,
        "P3.final_accuracy.newton_diag": 0.90,
    },
}


@dataclass(frozen=True)
class Threshold:
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


def load_calibration(assignment: str) -> dict:
    try:
        text = resources.files("reference").joinpath("data", f"calibration_{assignment}.json").read_text()
    except (FileNotFoundError, ModuleNotFoundError, OSError):
        return {}
    return json.loads(text)


def thresholds_for(assignment: str) -> dict[str, Threshold]:
    calibration = load_calibration(assignment)
    found = {}
    for key, contract in CONTRACT_THRESHOLDS.get(assignment, {}).items():
        stats = calibration.get(key)
        if isinstance(stats, dict) and "min" in stats:
            value = min(contract, round(float(stats["min"]) - MARGIN, 2))
            found[key] = Threshold(key, value, contract, float(stats["min"]), float(stats["median"]))
        else:
            found[key] = Threshold(key, contract, contract, None, None)
    return found
