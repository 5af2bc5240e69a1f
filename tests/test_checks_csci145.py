"""Every check of csci145-ps6 on made-up observations: it passes a correct one, names each catalogued
mistake, and says what the student's code raised when the probe recorded an error (milliseconds each).

The correct observations are what the probes would write for the reference solution (its
gaussian_kernel, sigmoid_derivative and make_mlp called on the assignment's own hidden inputs);
the wrong ones come from the rubric's catalogue of wrong formulas where it has one.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pytest
import torch

from graders.observe import Observations
from graders.outcome import Outcome
from tests.check_units import (
    Judge, assert_errored_path, assignment, changed, explain, figure, image_axis, line_axis, observations, part,
    rubric_function, with_figures,
)

ASSIGNMENT = "csci145-ps6"
SEED = 20261204
SIGMA = 8.0
"""Bandwidth for made-up uniform images (squared distances ≈ 784/6): off-diagonal entries near 0.4."""


def _numpy(value: Any) -> np.ndarray:
    return value.detach().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)


def _one_hot_logits(labels: np.ndarray) -> np.ndarray:
    return 5.0 * np.eye(10)[labels]


@pytest.fixture(scope="module")
def hidden(mnist_root) -> dict[str, dict[str, Any]]:
    return assignment(ASSIGNMENT).hidden_inputs(SEED, mnist_root)


@pytest.fixture(scope="module")
def judge(hidden) -> Judge:
    return Judge(ASSIGNMENT, hidden)


def _part_1A(rng: np.random.Generator) -> tuple[Any, dict[str, np.ndarray]]:
    data = {
        "train_set": (rng.random((1000, 784)).astype(np.float32), rng.integers(0, 10, 1000)),
        "test_set": (rng.random((100, 784)).astype(np.float32), rng.integers(0, 10, 100)),
    }
    values: dict[str, Any] = {}
    arrays: dict[str, np.ndarray] = {}
    for name, (images, labels) in data.items():
        values[f"{name}.len"] = len(images)
        values[f"{name}.item"] = {"kind": "tuple", "length": 2, "types": ["Tensor", "int"], "image_shape": [1, 28, 28],
                                  "label_repr": str(labels[0]), "label_shape": []}
        arrays[f"{name}.images"], arrays[f"{name}.labels"] = images, labels
        loader = name.replace("_set", "_loader")
        order = rng.permutation(len(images))
        values[f"{loader}.type"], values[f"{loader}.mismatched_batches"] = "DataLoader", 0
        values[f"{loader}.batch_sizes"] = [64] * (len(images) // 64) + [len(images) % 64]
        arrays[f"{loader}.images"], arrays[f"{loader}.labels"] = images[order], labels[order]
    return part("1A", ("train_set", "test_set", "train_loader", "test_loader"), values, arrays), arrays


def _part_1B(hidden: dict) -> Any:
    values = {"parameters": [["weight", [10, 784]], ["bias", [10]]], "pixel_range": [0.0, 1.0],
              "losses": [float(v) for v in np.linspace(2.3, 0.4, 100)], "logits.input_shape": [-1, 1, 28, 28]}
    arrays = {"logits": _one_hot_logits(hidden["1B"]["labels_grader_only"])}
    return part("1B", ("logreg_model", "logreg_losses"), values, arrays)


def _part_1C(reference: Any, hidden: dict, data: dict[str, np.ndarray]) -> Any:
    inputs = hidden["1C"]
    arrays = {f"K_{case}": _numpy(reference.gaussian_kernel(inputs[f"X1_{case}"], inputs[f"X2_{case}"], inputs["sigmas"][case]))
              for case in range(inputs["cases"])}
    train, test = data["train_set.images"], data["test_set.images"]
    arrays["K_train"] = _numpy(reference.gaussian_kernel(train, train, SIGMA)).astype(np.float64)
    arrays["K_test"] = _numpy(reference.gaussian_kernel(test, train, SIGMA)).astype(np.float64)
    arrays["train_logits"] = _one_hot_logits(data["train_set.labels"])
    arrays["test_logits"] = _one_hot_logits(data["test_set.labels"])
    values = {"sigma": SIGMA, "candidates": {"X": [], "y": []},
              "kernel_model.parameters": [["linear.weight", [10, 1000]], ["linear.bias", [10]]]}
    return part("1C", ("gaussian_kernel", "sigma", "K_train", "K_test", "kernel_model"), values, arrays)


def _part_2A(reference: Any, hidden: dict) -> Any:
    inputs = hidden["2A"]
    arrays = {f"out_{case}": _numpy(reference.sigmoid_derivative(torch.from_numpy(inputs[f"z_{case}"])))
              for case in range(inputs["cases"])}
    return part("2A", ("sigmoid_derivative",), {"source": "def sigmoid_derivative(z):\n    s = torch.sigmoid(z)\n    return s * (1 - s)\n"},
                arrays)


def _part_2B(reference: Any, hidden: dict) -> Any:
    values: dict[str, Any] = {}
    arrays: dict[str, np.ndarray] = {}
    for case, (layers, d, m, k) in enumerate(hidden["2B"]["cases"]):
        torch.manual_seed(case)
        net = reference.make_mlp(layers, d, m, k)
        values[f"params_{case}"] = [[name, list(p.shape)] for name, p in net.named_parameters()]
        for i, (_, p) in enumerate(net.named_parameters()):
            arrays[f"p_{case}_{i}"] = _numpy(p)
        values[f"modules_{case}"] = [type(mod).__name__ for mod in net.modules() if not list(mod.children())]
        with torch.no_grad():
            arrays[f"out_{case}"] = _numpy(net(torch.from_numpy(hidden["2B"][f"x_{case}"])))
    return part("2B", ("make_mlp",), values, arrays)


def _part_2C() -> Any:
    epochs = np.arange(10)
    train = {str(depth): [float(v) for v in 2.0 * np.exp(-0.2 * depth * epochs) + 0.1] for depth in (1, 2, 3)}
    test = {str(depth): [float(v) + 0.05 * (1 + epoch % 2) for epoch, v in enumerate(train[str(depth)])] for depth in (1, 2, 3)}
    return part("2C", ("train_losses", "test_losses"), {"train_losses": train, "test_losses": test}, {})


PREDICTION_FIGURE = figure(3, [image_axis(f"predicted {digit}", 0, digit, 1, 10) for digit in range(10)])
KERNEL_FIGURE = figure(5, [image_axis("kernel model: 7", 0, i, 1, 4) for i in range(4)])
LOSS_FIGURE = figure(9, [line_axis("-", "-", "-", ":", ":", ":", xlabel="epoch", ylabel="loss")])


@pytest.fixture(scope="module")
def correct(judge, hidden) -> Observations:
    rng = np.random.default_rng(SEED)
    one_a, data = _part_1A(rng)
    parts = [one_a, _part_1B(hidden), _part_1C(judge.reference, hidden, data), _part_2A(judge.reference, hidden),
             _part_2B(judge.reference, hidden), _part_2C()]
    return observations(parts, [PREDICTION_FIGURE, KERNEL_FIGURE, LOSS_FIGURE])


CHECK_NAMES = [c.name for c in assignment(ASSIGNMENT).rubric.checks]


@pytest.mark.parametrize("check", CHECK_NAMES)
def test_check_passes_a_correct_observation(judge, correct, check) -> None:
    result = judge(check, correct)
    assert result.outcome is Outcome.PASSED, explain(result)
    assert result.score == result.max_score


# ------------------------------------------------------------------ mistakes, each named
def _kernel_mistake(index: int) -> Callable:
    def make(obs: Observations, hidden: dict, judge: Judge) -> Observations:
        inputs = hidden["1C"]
        X1, X2, sigma = inputs["X1_0"], inputs["X2_0"], inputs["sigmas"][0]
        wrong = list(judge.rubric_function("kernel_mistakes")(X1, X2, sigma).values())[index]()
        return changed(obs, "1C", arrays={"K_0": wrong})
    return make


def _sigmoid_mistake(index: int) -> Callable:
    def make(obs: Observations, hidden: dict, judge: Judge) -> Observations:
        z = hidden["2A"]["z_0"]
        return changed(obs, "2A", arrays={"out_0": list(judge.rubric_function("sigmoid_mistakes")(z).values())[index]()})
    return make


def _first_mnist_rows(obs: Observations, hidden: dict, judge: Judge) -> Observations:
    images = hidden["_mnist"]["train"][:1000].reshape(1000, -1).astype(np.float32)
    return changed(obs, "1A", arrays={"train_set.images": images})


def _test_images_from_train(obs: Observations, hidden: dict, judge: Judge) -> Observations:
    return changed(obs, "1A", arrays={"test_set.images": obs.parts["1A"].arrays["train_set.images"][:100]})


def _drop_last(obs: Observations, hidden: dict, judge: Judge) -> Observations:
    arrays = obs.parts["1A"].arrays
    return changed(obs, "1A", arrays={"train_loader.images": arrays["train_loader.images"][:960],
                                      "train_loader.labels": arrays["train_loader.labels"][:960]})


def _random_logits(part_id: str, key: str) -> Callable:
    def make(obs: Observations, hidden: dict, judge: Judge) -> Observations:
        shape = obs.parts[part_id].arrays[key].shape
        return changed(obs, part_id, arrays={key: np.random.default_rng(1).normal(size=shape)})
    return make


def _K_train_sigma_squared(obs: Observations, hidden: dict, judge: Judge) -> Observations:
    train = obs.parts["1A"].arrays["train_set.images"]
    wrong = judge.rubric_function("kernel_mistakes")(train, train, SIGMA)
    return changed(obs, "1C", arrays={"K_train": next(iter(wrong.values()))()})


def _K_train_identity(obs: Observations, hidden: dict, judge: Judge) -> Observations:
    return changed(obs, "1C", arrays={"K_train": np.eye(1000)})


def _relu_after_last(obs: Observations, hidden: dict, judge: Judge) -> Observations:
    return changed(obs, "2B", arrays={f"out_{c}": np.maximum(obs.parts["2B"].arrays[f"out_{c}"], 0) for c in range(4)})


def _extra_layer(obs: Observations, hidden: dict, judge: Judge) -> Observations:
    layers, d, m, k = hidden["2B"]["cases"][1]
    params = [["0.weight", [m, d]], ["2.weight", [m, m]], ["4.weight", [k, m]]]
    return changed(obs, "2B", values={"params_1": params})


def _wrong_forward(obs: Observations, hidden: dict, judge: Judge) -> Observations:
    return changed(obs, "2B", arrays={f"out_{c}": 2 * obs.parts["2B"].arrays[f"out_{c}"] + 1 for c in range(4)})


def _train_loss_rises(obs: Observations, hidden: dict, judge: Judge) -> Observations:
    train = dict(obs.parts["2C"].values["train_losses"])
    train["2"] = list(reversed(train["2"]))
    return changed(obs, "2C", values={"train_losses": train})


def _figures(*figures) -> Callable:
    return lambda obs, hidden, judge: with_figures(obs, figures)


def _values(part_id: str, **values: Any) -> Callable:
    return lambda obs, hidden, judge: changed(obs, part_id, values={k.replace("__", "."): v for k, v in values.items()})


def _arrays(part_id: str, make: Callable[[Observations], dict[str, np.ndarray]]) -> Callable:
    return lambda obs, hidden, judge: changed(obs, part_id, arrays=make(obs))


KERNEL_MISTAKES = 11
SIGMOID_MISTAKES = 6
MISTAKES: list[tuple[str, str, Callable, str]] = [
    # (check, what the student did, how the observation changes, words the failure must say)
    ("datasets_have_contract_lengths", "whole split", _values("1A", train_set__len=60000), "holds the whole MNIST split"),
    ("items_are_image_label_pairs", "one-hot label", _values("1A", **{"train_set__item": {"image_shape": [1, 28, 28], "label_shape": [10], "label_repr": "tensor([0., 1., …])"}}),
     "the label is one-hot encoded"),
    ("items_are_image_label_pairs", "image of 3×28", _values("1A", **{"test_set__item": {"image_shape": [3, 28], "label_shape": []}}), "expected 1×28×28 or 784"),
    ("test_images_not_in_train", "test images in train", _test_images_from_train, "draw both sets from one random permutation"),
    ("sets_are_random_draws", "first rows", _first_mnist_rows, "first 1000 images of the MNIST train split"),
    ("loaders_cover_each_set_once", "drop_last", _drop_last, "drop_last=True drops the last partial batch"),
    ("logreg_parameters_are_784_by_10", "hidden layer",
     _values("1B", parameters=[["0.weight", [128, 784]], ["0.bias", [128]], ["2.weight", [10, 128]], ["2.bias", [10]]]),
     "logistic regression is a single linear map"),
    ("logreg_outputs_batch_by_10", "probabilities of one class", _arrays("1B", lambda obs: {"logits": np.zeros((500, 1))}), "returned shape 500×1"),
    ("logreg_losses_has_100_decreasing", "one loss per epoch", _values("1B", losses=[2.3, 1.0, 0.5]), "record the loss at every optimizer step"),
    ("logreg_losses_has_100_decreasing", "no training", _values("1B", losses=[2.3] * 100), "optimizer.zero_grad(), loss.backward() and optimizer.step()"),
    ("logreg_accuracy_on_held_back", "untrained model", _random_logits("1B", "logits"), "classifies unseen digits poorly"),
    ("prediction_figure_has_10_labelled_digits", "untitled images",
     _figures(figure(3, [image_axis("", 0, i, 1, 10) for i in range(10)]), KERNEL_FIGURE, LOSS_FIGURE),
     "set each title to the predicted digit"),
    *[("kernel_matches_reference", f"kernel mistake {i}", _kernel_mistake(i), f"kernel_mistakes[{i}]") for i in range(KERNEL_MISTAKES)],
    ("K_train_is_valid_kernel", "a term added", _arrays("1C", lambda obs: {"K_train": obs.parts["1C"].arrays["K_train"] + 0.5}),
     "your kernel's diagonal is not exp(−0) = 1"),
    ("K_train_is_valid_kernel", "not square", _arrays("1C", lambda obs: {"K_train": obs.parts["1C"].arrays["K_train"][:, :100]}),
     "expected n×n with n = 1000"),
    ("K_train_matches_gaussian_kernel_of_training_images", "σ² denominator", _K_train_sigma_squared,
     "the denominator should be 2σ², not σ²"),
    ("K_test_has_shape_100_by_n", "transposed", _arrays("1C", lambda obs: {"K_test": obs.parts["1C"].arrays["K_test"].T}),
     "K_test is transposed"),
    ("kernel_model_takes_n_inputs", "pixel model", _values("1C", **{"kernel_model__parameters": [["weight", [10, 784]], ["bias", [10]]]}),
     "not an image (784 pixels)"),
    ("kernel_model_train_accuracy", "untrained", _random_logits("1C", "train_logits"), "train full-batch on K_train"),
    ("kernel_model_train_accuracy", "σ too small", lambda obs, hidden, judge: _random_logits("1C", "train_logits")(_K_train_identity(obs, hidden, judge), hidden, judge),
     "σ is too small for the pixel scale"),
    ("kernel_model_test_accuracy", "K_test against the wrong images", _random_logits("1C", "test_logits"),
     "K_test must compare test images with the *training* images"),
    ("kernel_prediction_figure_exists", "no figure", _figures(LOSS_FIGURE), "plot a few test images with the kernel model's predictions"),
    *[("sigmoid_derivative_matches_autograd", f"sigmoid mistake {i}", _sigmoid_mistake(i), f"sigmoid_mistakes[{i}]") for i in range(SIGMOID_MISTAKES)],
    ("sigmoid_derivative_stable_at_large_inputs", "exp overflow",
     _arrays("2A", lambda obs: {"out_2": np.where(np.abs(np.arange(9) - 4) >= 3, np.nan, obs.parts["2A"].arrays["out_2"])}),
     "exp(−z) overflows for z ≪ 0"),
    ("mlp_weight_shapes_match_depth", "one layer too many", _extra_layer, "off-by-one depth"),
    ("mlp_relu_between_layers_not_after_last", "ReLU after the last layer", _relu_after_last, "ReLU after the last layer: the output layer is linear"),
    ("mlp_output_matches_formula", "forward skips a layer", _wrong_forward, "your forward() skips, reorders or reshapes a layer"),
    ("depth_histories_present", "test loss on the training set",
     lambda obs, hidden, judge: changed(obs, "2C", values={"test_losses": obs.parts["2C"].values["train_losses"]}),
     "the test loss is computed on the training set"),
    ("depth_histories_present", "depth missing",
     lambda obs, hidden, judge: changed(obs, "2C", values={"train_losses": {"1": [1.0, 0.5], "2": [1.0, 0.5]}}), "no entry for depth 3"),
    ("training_loss_decreases_per_depth", "one depth not trained", _train_loss_rises, "does not train this depth's model"),
    ("loss_figure_solid_train_dotted_test", "all solid",
     _figures(PREDICTION_FIGURE, KERNEL_FIGURE, figure(9, [line_axis("-", "-", "-", "-", "-", "-")])), "plot test losses with linestyle=':'"),
]


def _expected_words(words: str, judge: Judge, hidden: dict) -> str:
    """The catalogue's own description of entry i (``kernel_mistakes[i]``), else the words as given."""
    for name, args in (("kernel_mistakes", lambda: (hidden["1C"]["X1_0"], hidden["1C"]["X2_0"], hidden["1C"]["sigmas"][0])),
                       ("sigmoid_mistakes", lambda: (hidden["2A"]["z_0"],))):
        if words.startswith(name + "["):
            return list(judge.rubric_function(name)(*args()))[int(words[len(name) + 1:-1])]
    return words


@pytest.mark.parametrize("check, mistake, make, words", MISTAKES, ids=[f"{c}-{m}" for c, m, _, _ in MISTAKES])
def test_check_names_the_mistake(judge, correct, hidden, check, mistake, make, words) -> None:
    result = judge(check, make(correct, hidden, judge))
    assert result.outcome is Outcome.FAILED, explain(result)
    assert result.score == 0
    assert _expected_words(words, judge, hidden) in explain(result), explain(result)


def test_every_catalogued_formula_is_tested() -> None:
    hidden_like = {"X1": np.ones((2, 3)), "z": np.zeros(3)}
    assert len(rubric_function(ASSIGNMENT, "kernel_mistakes")(hidden_like["X1"], hidden_like["X1"], 1.0)) == KERNEL_MISTAKES
    assert len(rubric_function(ASSIGNMENT, "sigmoid_mistakes")(hidden_like["z"])) == SIGMOID_MISTAKES


# ------------------------------------------------------------------ the errored path
ERRORED: dict[str, tuple[str, ...] | None] = {
    # check → the probe keys whose call raised (None: the part's probe cell itself failed)
    "datasets_have_contract_lengths": None,
    "items_are_image_label_pairs": ("train_set.items",),
    "test_images_not_in_train": ("train_set.images",),
    "sets_are_random_draws": ("test_set.images",),
    "loaders_cover_each_set_once": ("train_loader.batches",),
    "logreg_parameters_are_784_by_10": None,
    "logreg_outputs_batch_by_10": ("logits",),
    "logreg_losses_has_100_decreasing": ("losses",),
    "logreg_accuracy_on_held_back": ("logits",),
    "prediction_figure_has_10_labelled_digits": "figures",
    "kernel_matches_reference": ("K_2",),
    "K_train_is_valid_kernel": ("K_train",),
    "K_train_matches_gaussian_kernel_of_training_images": ("K_train",),
    "K_test_has_shape_100_by_n": ("K_test",),
    "kernel_model_takes_n_inputs": ("train_logits",),
    "kernel_model_train_accuracy": ("train_logits",),
    "kernel_model_test_accuracy": ("test_logits",),
    "kernel_prediction_figure_exists": "figures",
    "sigmoid_derivative_matches_autograd": ("out_1",),
    "sigmoid_derivative_stable_at_large_inputs": ("out_3",),
    "mlp_weight_shapes_match_depth": ("net_2",),
    "mlp_relu_between_layers_not_after_last": ("net_1",),
    "mlp_output_matches_formula": ("out_0",),
    "depth_histories_present": None,
    "training_loss_decreases_per_depth": None,
    "loss_figure_solid_train_dotted_test": "figures",
}


@pytest.mark.parametrize("check", sorted(ERRORED))
def test_check_scores_zero_and_says_what_was_raised(judge, correct, check) -> None:
    assert_errored_path(judge, correct, check, ERRORED[check])


def test_every_check_has_a_mistake_and_an_errored_path() -> None:
    names = set(CHECK_NAMES)
    assert names == set(ERRORED), names ^ set(ERRORED)
    assert names == {check for check, *_ in MISTAKES}, names ^ {check for check, *_ in MISTAKES}
