"""Calibrate grading thresholds: run the reference solution over many seeds and record its figures.

    python -m reference.calibrate csci145-ps6 [--seeds 20] [--output PATH]

writes ``reference/data/calibration_<assignment>.json``: for each thresholded figure
(``"1B.test_accuracy"``, ``"2C.final_train_loss.1"``, …) the ``min``, ``median``, ``max``, ``n``
and all ``values`` of the reference's runs, plus the data source, the settings, the creation
time and the machine. Graders set their thresholds well below the reference's worst run.

Each assignment registers one function in ``CALIBRATORS``: it takes the seeds and the MNIST to
use, and returns the values of every figure (one per seed) and the settings that produced them.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from graders.mnist import MnistInfo, ensure_mnist, load_mnist_arrays
from reference import csci145_ps6, ece685d_hw2
from reference.scaling import machine_info

DATA_DIR = Path(__file__).parent / "data"
HOLDOUT_SIZE = 500
DEFAULT_SEEDS = 20


@dataclass
class CalibrationRuns:
    """The raw outcome of calibrating one assignment."""

    values: dict[str, list[float]] = field(default_factory=dict)
    """Figure key (``"1B.test_accuracy"``) → its value in each seeded run, in seed order."""
    settings: dict[str, object] = field(default_factory=dict)
    """Hyper-parameters and evaluation choices behind the values, recorded for the reader."""

    def add(self, figures: dict[str, float]) -> None:
        """Append one run's figures."""
        for key, value in figures.items():
            self.values.setdefault(key, []).append(float(value))


# --- csci145-ps6 --------------------------------------------------------------------------


def _holdout_images(seed: int, size: int = HOLDOUT_SIZE) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw ``size`` images of MNIST's test split (never used by ``make_datasets``), as ToTensor gives them."""
    images, labels = load_mnist_arrays(train=False)
    chosen = np.random.default_rng(seed).choice(len(images), size=min(size, len(images)), replace=False)
    pixels = torch.from_numpy(images[chosen]).to(torch.float32).div(255.0).unsqueeze(1)
    return pixels, torch.from_numpy(labels[chosen])


def _csci145_run(seed: int, mnist: MnistInfo) -> dict[str, float]:
    """Build and train every trained object of csci145-ps6 from ``seed``; return its figures."""
    ref = csci145_ps6
    train_set, test_set = ref.make_datasets(mnist.root, seed)
    train_loader, test_loader = ref.make_loaders(train_set, test_set, seed=seed)

    logreg_model, _ = ref.train_logistic_regression(train_loader, seed=seed)
    holdout_x, holdout_y = _holdout_images(seed)
    with torch.no_grad():
        figures = {"1B.test_accuracy": ref.accuracy(logreg_model(holdout_x), holdout_y)}

    X_train, y_train = ref.dataset_matrix(train_set)
    X_test, y_test = ref.dataset_matrix(test_set)
    sigma = ref.choose_sigma(X_train)
    K_train = ref.gaussian_kernel(X_train, X_train, sigma)
    K_test = ref.gaussian_kernel(X_test, X_train, sigma)
    kernel_model, _ = ref.train_kernel_model(K_train, y_train, seed=seed)
    with torch.no_grad():
        figures["1C.train_accuracy"] = ref.accuracy(kernel_model(K_train), y_train)
        figures["1C.test_accuracy"] = ref.accuracy(kernel_model(K_test), y_test)

    train_losses, test_losses = ref.train_depth_comparison(train_loader, test_loader, seed=seed)
    for depth in train_losses:
        figures[f"2C.final_train_loss.{depth}"] = train_losses[depth][-1]
        figures[f"2C.final_test_loss.{depth}"] = test_losses[depth][-1]
    return figures


def calibrate_csci145(seeds: Sequence[int], mnist: MnistInfo) -> CalibrationRuns:
    """Run the csci145-ps6 reference once per seed on ``mnist``."""
    ref = csci145_ps6
    runs = CalibrationRuns(
        settings={
            "1B": f"{ref.LOGREG_STEPS} SGD steps, lr {ref.LOGREG_LR}, batch {ref.BATCH_SIZE}; "
            f"accuracy on {HOLDOUT_SIZE} random images of MNIST's test split (held back)",
            "1C": f"sigma = half the median pairwise distance; {ref.KERNEL_STEPS} full-batch Adam "
            f"steps, lr {ref.KERNEL_LR}; accuracy on K_train and on K_test (the 100 test_set images)",
            "2C": f"make_mlp(depth, 784, {ref.MLP_WIDTH}, 10), Adam lr {ref.MLP_LR}, "
            f"{ref.MLP_EPOCHS} epochs, batch {ref.BATCH_SIZE}; mean loss over the set after the last epoch",
        }
    )
    for seed in seeds:
        runs.add(_csci145_run(seed, mnist))
    return runs


# --- ece685d-hw2 --------------------------------------------------------------------------


def _ece685d_run(seed: int, two_view: ece685d_hw2.MNISTTwoView) -> dict[str, float]:
    """Fit P3's three methods from ``seed`` (split and initial weights) and measure P2's views."""
    figures: dict[str, float] = {}
    for method, history in ece685d_hw2.run_histories(seed).items():
        figures[f"P3.initial_loss.{method}"] = history["loss"][0]
        figures[f"P3.final_loss.{method}"] = history["loss"][-1]
        figures[f"P3.final_accuracy.{method}"] = history["accuracy"][-1]
    resemblance = ece685d_hw2.measure_view_resemblance(two_view, seed)
    figures["P2.view_above_mean_other"] = resemblance["above_mean_other"]
    figures["P2.view_best_in_group_of_8"] = resemblance["best_in_group"]
    return figures


def calibrate_ece685d(seeds: Sequence[int], mnist: MnistInfo) -> CalibrationRuns:
    """Run the ece685d-hw2 reference once per seed (P3 on breast cancer, P2 on ``mnist``)."""
    logistic = ece685d_hw2.logistic
    runs = CalibrationRuns(
        settings={
            "P2": "MNISTTwoView over MNIST train; 256 seeded items per seed; correlation of view x1 "
            "with every source image: fraction above the mean over sources, and fraction whose "
            "own source is the best match within groups of 8",
            "P3": f"scikit-learn breast cancer (bundled with scikit-learn, not MNIST), test size "
            f"{logistic.TEST_SIZE} stratified with random_state=seed, standardised on train, bias "
            f"column; w0 ~ N(0, {logistic.INIT_SCALE}^2) seeded; lr {logistic.LEARNING_RATE}, "
            f"{logistic.DEFAULT_ITERATIONS} iterations; GD on the gradient / n, Newton and diagonal "
            f"Newton with ridge {logistic.DAMPING}; loss = summed BCE on the training set, "
            f"accuracy on the test set",
        }
    )
    two_view = ece685d_hw2.make_two_view_dataset(mnist.root, train=True)
    for seed in seeds:
        runs.add(_ece685d_run(seed, two_view))
    return runs


CALIBRATORS: dict[str, Callable[[Sequence[int], MnistInfo], CalibrationRuns]] = {
    "csci145-ps6": calibrate_csci145,
    "ece685d-hw2": calibrate_ece685d,
}


# --- document -----------------------------------------------------------------------------


def summarise(values: Sequence[float]) -> dict[str, object]:
    """Reduce one figure's runs to min, median, max, n and the values themselves."""
    return {
        "min": min(values),
        "median": statistics.median(values),
        "max": max(values),
        "n": len(values),
        "values": list(values),
    }


def build_calibration(assignment: str, seeds: Sequence[int], mnist: MnistInfo) -> dict[str, object]:
    """Run the assignment's calibrator and assemble the JSON document."""
    runs = CALIBRATORS[assignment](seeds, mnist)
    document: dict[str, object] = {key: summarise(values) for key, values in runs.values.items()}
    document.update(
        {
            "assignment": assignment,
            "seeds": list(seeds),
            "settings": runs.settings,
            "data_source": mnist.source,
            "data": {"n_train": mnist.n_train, "n_test": mnist.n_test},
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "machine": machine_info(),
        }
    )
    return document


def default_output(assignment: str) -> Path:
    """Where the calibration of ``assignment`` is stored in the package."""
    return DATA_DIR / f"calibration_{assignment}.json"


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m reference.calibrate", description=__doc__.splitlines()[0])
    parser.add_argument("assignment", choices=sorted(CALIBRATORS))
    parser.add_argument("--seeds", type=int, default=DEFAULT_SEEDS, help="number of seeds, 0 … N−1 (default 20)")
    parser.add_argument("--output", type=Path, default=None, help="JSON file to write")
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error("--seeds must be at least 1")
    document = build_calibration(args.assignment, range(args.seeds), ensure_mnist())
    output = args.output or default_output(args.assignment)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(document, indent=2) + "\n")
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
