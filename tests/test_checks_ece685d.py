"""Every check of ece685d-hw2 on made-up observations: it passes a correct one, names each catalogued
mistake, and says what the student's code raised when the probe recorded an error (milliseconds each).

The correct observations are what the probes would write for the reference solution: its
residual_mlp_gradients and bce_* called on the assignment's own hidden inputs, its MNISTTwoView
over a made-up base of MNIST digits, its three optimisers' histories. The wrong ones come from the
rubric's catalogues of wrong formulas (every entry of them) and from the mistakes the rubric names.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pytest
import torch

from graders.judge import relative_error
from graders.observe import Observations
from graders.outcome import Outcome
from tests.check_units import (
    Judge, assert_errored_path, assignment, call_failed, changed, explain, figure, image_axis, line_axis, observations, part,
    rubric_function, with_figures,
)

ASSIGNMENT = "ece685d-hw2"
SEED = 20261204
PARAM_NAMES = ("W1", "b1", "W2", "b2", "W3", "b3")
BATCH = {"kind": "list", "elements": [{"type": "Tensor", "shape": [8, 1, 28, 28]}, {"type": "Tensor", "shape": [8, 1, 28, 28]},
                                      {"type": "Tensor", "shape": [8]}]}
VIEW = {"type": "Tensor", "module": "torch", "shape": [1, 28, 28], "dtype": "torch.float32", "tensor": True}
LABEL = {"type": "int", "module": "builtins", "shape": [], "dtype": "", "tensor": False, "repr": "7"}


def _numpy(value: Any) -> np.ndarray:
    return value.detach().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)


@pytest.fixture(scope="module")
def hidden(mnist_root) -> dict[str, dict[str, Any]]:
    return assignment(ASSIGNMENT).hidden_inputs(SEED, mnist_root)


@pytest.fixture(scope="module")
def judge(hidden) -> Judge:
    return Judge(ASSIGNMENT, hidden)


def _part_P1(judge: Judge, hidden: dict) -> Any:
    inputs = hidden["P1"]
    activations = judge.rubric_function("NUMPY_ACTIVATIONS")
    values: dict[str, Any] = {}
    arrays: dict[str, np.ndarray] = {}
    for case, spec in enumerate(inputs["cases"]):
        g, g_prime = activations[spec["activation"]]
        params = {name: inputs[f"{name}_{case}"] for name in PARAM_NAMES}
        grads = judge.reference.residual_mlp_gradients(inputs[f"X_{case}"], inputs[f"Y_{case}"], params, g, g_prime)
        values[f"kind_{case}"], values[f"returned_{case}"], values[f"keys_{case}"] = "NumPy arrays", "dict", list(PARAM_NAMES)
        for name in PARAM_NAMES:
            values[f"key_{case}_{name}"] = name
            arrays[f"grad_{case}_{name}"] = _numpy(grads[name])
    return part("P1", ("residual_mlp_gradients",), values, arrays)


def _part_P2(judge: Judge, hidden: dict) -> Any:
    samples = 32  # the probe draws more; the checks judge fractions of whatever was drawn (groups of 8)
    rng = np.random.default_rng(hidden["P2"]["seed"])
    mnist = hidden["_mnist"]
    pick = rng.choice(len(mnist["train"]), size=1000, replace=False)
    base = [(mnist["train"][i], int(mnist["train_labels"][i])) for i in pick]
    dataset = judge.reference.MNISTTwoView(base)
    indices = rng.choice(len(base), size=samples, replace=False)
    torch.manual_seed(0)
    first = [dataset[int(i)] for i in indices]
    again = [dataset[int(i)] for i in indices]
    rows = lambda items, column: np.stack([_numpy(item[column]).reshape(-1) for item in items]).astype(np.float32)  # noqa: E731
    values = {
        "class": {"is_class": True, "name": "MNISTTwoView", "subclasses_dataset": True, "bases": ["Dataset", "Generic", "object"]},
        "instance": {"type": "MNISTTwoView", "of_class": True, "is_dataset": True},
        "len": len(base), "indices": [int(i) for i in indices],
        "item": {"kind": "tuple", "length": 3, "elements": [VIEW, VIEW, LABEL]},
        "layout": {"nested": False, "views": [0, 1], "label": 2, "original": None},
        "view_shape": [1, 28, 28], "label_types": ["int"], "source_how": "`base[i]`",
        "loader": [BATCH, BATCH], "loader_workers": [BATCH, BATCH], "process_limit": [4096, 4096],
    }
    arrays = {"x1": rows(first, 0), "x2": rows(first, 1), "x1_again": rows(again, 0), "x2_again": rows(again, 1),
              "labels": np.array([[item[2]] for item in first], dtype=np.float64),
              "source_images": np.stack([base[int(i)][0].reshape(-1) for i in indices]).astype(np.float32),
              "source_labels": np.array([[base[int(i)][1]] for i in indices], dtype=np.float64)}
    return part("P2", ("MNISTTwoView", "two_view_dataset"), values, arrays)


def _part_P3(judge: Judge, hidden: dict) -> Any:
    inputs = hidden["P3"]
    arrays = {}
    for case in range(inputs["cases"]):
        w, X, y = (torch.from_numpy(inputs[f"{k}_{case}"]) for k in ("w", "X", "y"))
        for name in ("bce_loss", "bce_gradient", "bce_hessian"):
            arrays[f"{name}_{case}"] = _numpy(getattr(judge.reference, name)(w, X, y))
    histories = {method: {k: [float(v) for v in series] for k, series in dict(history).items()}
                 for method, history in judge.reference.run_histories(seed=0, iterations=15).items()}
    return part("P3", ("bce_loss", "bce_gradient", "bce_hessian", "histories"), {"histories": histories}, arrays)


def _two_view_figure(labelled: int = 8, rows: int = 8, cols: int = 3) -> Any:
    axes = []
    for row in range(rows):
        for col in range(cols):
            axes.append(image_axis(row=row, col=col, rows=rows, cols=cols,
                                   xlabel=f"label {row}" if col == 0 and row < labelled else ""))
    return figure(4, axes)


TWO_VIEW_FIGURE = _two_view_figure()
COMPARISON_FIGURE = figure(8, [line_axis("-", "-", "-", xlabel="iteration", ylabel="loss"),
                               line_axis("-", "-", "-", xlabel="iteration", ylabel="test accuracy"),
                               line_axis("-", "-", "-", xlabel="time (s)", ylabel="loss")])


@pytest.fixture(scope="module")
def correct(judge, hidden) -> Observations:
    parts = [_part_P1(judge, hidden), _part_P2(judge, hidden), _part_P3(judge, hidden)]
    return observations(parts, [TWO_VIEW_FIGURE, COMPARISON_FIGURE])


CHECK_NAMES = [c.name for c in assignment(ASSIGNMENT).rubric.checks]


@pytest.mark.parametrize("check", CHECK_NAMES)
def test_check_passes_a_correct_observation(judge, correct, check) -> None:
    result = judge(check, correct)
    assert result.outcome is Outcome.PASSED, explain(result)
    assert result.score == result.max_score


# ------------------------------------------------------------------ every catalogued formula, named
def _named_by_catalogue(judge: Judge, check: str, correct: Observations, catalogue: dict[str, Callable[[], np.ndarray]],
                        expected: np.ndarray, put: Callable[[np.ndarray], Observations], rtol: float) -> list[str]:
    """Run ``check`` once per catalogue entry; the entries whose failure did not name them (or an equal earlier entry)."""
    problems, made = [], []
    for text, make in catalogue.items():
        wrong = np.asarray(make(), dtype=np.float64).reshape(np.shape(expected)) if np.size(make()) == np.size(expected) else make()
        made.append((text, wrong))
        if np.shape(wrong) == np.shape(expected) and relative_error(wrong, expected) <= rtol:
            continue  # this mistake leaves this quantity right: nothing to name here
        same = [t for t, earlier in made if np.shape(earlier) == np.shape(wrong) and relative_error(wrong, earlier) <= 1e-9]
        result = judge(check, put(wrong))
        if result.outcome is not Outcome.FAILED or not any(t in f"{result.message} {result.mistake}" for t in same):
            problems.append(f"{text}: {explain(result)}")
    return problems


@pytest.mark.parametrize("name", PARAM_NAMES)
def test_gradient_check_names_every_catalogued_backprop_mistake(judge, correct, hidden, name) -> None:
    inputs, spec = hidden["P1"], hidden["P1"]["cases"][0]
    params = {p: inputs[f"{p}_0"] for p in PARAM_NAMES}
    catalogue = judge.rubric_function("residual_mistakes")(inputs["X_0"], inputs["Y_0"], params, spec["activation"])[name]
    assert len(catalogue) >= 10
    expected = correct.parts["P1"].arrays[f"grad_0_{name}"]
    put = lambda wrong: changed(correct, "P1", arrays={f"grad_0_{name}": wrong})  # noqa: E731
    assert _named_by_catalogue(judge, f"gradient_{name}_matches_autograd", correct, catalogue, expected, put, 1e-5) == []


@pytest.mark.parametrize("name", ("bce_loss", "bce_gradient", "bce_hessian"))
def test_bce_check_names_every_catalogued_mistake(judge, correct, hidden, name) -> None:
    inputs = hidden["P3"]
    catalogue = judge.rubric_function("bce_mistakes")(inputs["w_0"], inputs["X_0"], inputs["y_0"])[name]
    expected = correct.parts["P3"].arrays[f"{name}_0"]
    put = lambda wrong: changed(correct, "P3", arrays={f"{name}_0": wrong})  # noqa: E731
    assert _named_by_catalogue(judge, f"{name}_matches_autograd", correct, catalogue, expected, put, 1e-4) == []


# ------------------------------------------------------------------ the other mistakes the rubric names
def _values(part_id: str, **values: Any) -> Callable:
    return lambda obs: changed(obs, part_id, values=values)


def _arrays(part_id: str, make: Callable[[Observations], dict[str, np.ndarray]]) -> Callable:
    return lambda obs: changed(obs, part_id, arrays=make(obs))


def _p2(obs: Observations, key: str) -> np.ndarray:
    return obs.parts["P2"].arrays[key]


def _histories(change: Callable[[dict], None]) -> Callable:
    def make(obs: Observations) -> Observations:
        histories = {m: {k: list(v) for k, v in record.items()} for m, record in obs.parts["P3"].values["histories"].items()}
        change(histories)
        return changed(obs, "P3", values={"histories": histories})
    return make


def _per_iteration_time(histories: dict) -> None:
    time = histories["gd"]["time"]
    histories["gd"]["time"] = [0.001 * (1 + i % 3) for i in range(len(time))]


def _ascent(histories: dict) -> None:
    histories["gd"]["loss"] = list(reversed(histories["gd"]["loss"]))


def _diag_is_newton(histories: dict) -> None:
    histories["newton_diag"] = {k: list(v) for k, v in histories["newton"].items()}


def _chance_accuracy(histories: dict) -> None:
    histories["newton"]["accuracy"] = [0.5] * len(histories["newton"]["accuracy"])


def _overflow(histories: dict) -> None:
    histories["gd"]["loss"] = [*histories["gd"]["loss"][:-1], float("inf")]


def _shuffled_labels(obs: Observations) -> Observations:
    labels = _p2(obs, "labels")
    return changed(obs, "P2", arrays={"labels": np.roll(labels, 1, axis=0)})


def _views_of_other_images(obs: Observations) -> Observations:
    return changed(obs, "P2", arrays={"x1": np.roll(_p2(obs, "x1"), 1, axis=0), "x2": np.roll(_p2(obs, "x2"), 1, axis=0)})


def _worker_error(obs: Observations) -> Observations:
    failed = call_failed(obs, "P2", "loader_workers")
    errors = {**failed.parts["P2"].values["errors"],
              "loader_workers": {"type": "AttributeError", "message": "Can't get local object 'make.<locals>.<lambda>'"}}
    return changed(failed, "P2", values={"errors": errors})


MISTAKES: list[tuple[str, str, Callable, str]] = [
    # (check, what the student did, how the observation changes, words the failure must say)
    ("class_subclasses_dataset", "plain class", _values("P2", **{"class": {"is_class": True, "name": "MNISTTwoView", "subclasses_dataset": False, "bases": ["object"]}}),
     "write `class MNISTTwoView(torch.utils.data.Dataset):`"),
    ("class_subclasses_dataset", "a function", _values("P2", **{"class": {"is_class": False, "name": "function"}}), "define `class MNISTTwoView(Dataset): …`"),
    ("dataset_has_items", "empty", _values("P2", len=0), "expected a positive number of MNIST images"),
    ("item_is_two_views_and_label", "nested", _values("P2", layout={"nested": True, "views": [0, 1], "label": 1, "original": None}),
     "return x1, x2, y rather than (x1, x2), y"),
    ("item_is_two_views_and_label", "PIL views", _values("P2", item={"kind": "tuple", "length": 3, "elements": [
        {"type": "Image", "module": "PIL", "shape": [], "tensor": False}, {"type": "Image", "module": "PIL", "shape": [], "tensor": False}, LABEL]}),
     "finish the augmentation with transforms.ToTensor()"),
    ("label_is_source_images_integer_label", "one-hot label",
     _arrays("P2", lambda obs: {"labels": np.eye(10)[_p2(obs, "labels")[:, 0].astype(int)]}), "the label is one-hot encoded"),
    ("label_is_source_images_integer_label", "label of another index", _shuffled_labels,
     "the label must come from the same index as the image"),
    ("views_differ_within_item", "one augmentation for both", _arrays("P2", lambda obs: {"x2": _p2(obs, "x1")}),
     "apply the random augmentation twice"),
    ("views_differ_between_draws", "reseeded", _arrays("P2", lambda obs: {"x1_again": _p2(obs, "x1")}),
     "do not reseed inside __getitem__"),
    ("views_resemble_their_source", "views of the wrong image", _views_of_other_images, "views of the wrong image"),
    ("dataloader_yields_batches_of_8", "no channel", _values("P2", loader=[{"kind": "list", "elements": [
        {"shape": [8, 28, 28]}, {"shape": [8, 28, 28]}, {"shape": [8]}]}] * 2), "views need a channel dimension"),
    ("dataloader_works_with_two_workers", "a lambda transform", _worker_error, "cannot be pickled"),
    ("figure_shows_8_rows_of_original_and_views", "unlabelled originals",
     lambda obs: with_figures(obs, [_two_view_figure(labelled=0), COMPARISON_FIGURE]), "put each original's label under it"),
    ("figure_shows_8_rows_of_original_and_views", "transposed grid",
     lambda obs: with_figures(obs, [_two_view_figure(rows=3, cols=8), COMPARISON_FIGURE]), "plt.subplots(8, 3)"),
    ("histories_have_three_methods", "overflowing loss", _histories(_overflow), "the loss overflowed"),
    ("histories_have_three_methods", "no newton_diag", _histories(lambda h: h.pop("newton_diag")), "histories has no dict for 'newton_diag'"),
    ("time_is_cumulative", "time per iteration", _histories(_per_iteration_time), "time recorded per iteration instead of since start"),
    ("time_is_cumulative", "clock readings", _histories(lambda h: h["gd"].update(time=[1.7e9 + i for i in range(len(h["gd"]["time"]))])),
     "subtract the start time"),
    ("loss_decreases_for_each_method", "gradient ascent", _histories(_ascent), "gradient ascent instead of descent"),
    ("final_accuracy_reaches_threshold", "chance accuracy", _histories(_chance_accuracy), "standardise the features"),
    ("newton_diag_differs_from_newton", "full Hessian", _histories(_diag_is_newton), "diagonal Newton uses the full Hessian"),
    ("comparison_figure_exists", "one curve per plot",
     lambda obs: with_figures(obs, [TWO_VIEW_FIGURE, figure(8, [line_axis("-"), line_axis("-")])]),
     "plot loss and accuracy per iteration for the three methods"),
]
CATALOGUED = {f"gradient_{name}_matches_autograd" for name in PARAM_NAMES} | {
    f"{name}_matches_autograd" for name in ("bce_loss", "bce_gradient", "bce_hessian")}
"""Checks whose mistakes are tested entry by entry from the rubric's catalogues (above)."""


@pytest.mark.parametrize("check, mistake, make, words", MISTAKES, ids=[f"{c}-{m}" for c, m, _, _ in MISTAKES])
def test_check_names_the_mistake(judge, correct, check, mistake, make, words) -> None:
    result = judge(check, make(correct))
    assert result.outcome is Outcome.FAILED, explain(result)
    assert result.score == 0
    assert words in explain(result), explain(result)


# ------------------------------------------------------------------ the errored path
ERRORED: dict[str, tuple[str, ...] | None | str] = {
    # check → the probe keys whose call raised (None: the part's probe cell itself failed)
    **{f"gradient_{name}_matches_autograd": ("case_1",) for name in PARAM_NAMES},
    "class_subclasses_dataset": None,
    "dataset_has_items": ("len",),
    "item_is_two_views_and_label": ("items",),
    "label_is_source_images_integer_label": ("labels",),
    "views_differ_within_item": ("x2",),
    "views_differ_between_draws": ("x1_again",),
    "views_resemble_their_source": ("items",),
    "dataloader_yields_batches_of_8": ("loader",),
    "dataloader_works_with_two_workers": ("loader_workers",),
    "figure_shows_8_rows_of_original_and_views": "figures",
    "bce_loss_matches_autograd": ("bce_loss_1",),
    "bce_gradient_matches_autograd": ("bce_gradient_0",),
    "bce_hessian_matches_autograd": ("bce_hessian_1",),
    "histories_have_three_methods": ("histories",),
    "time_is_cumulative": ("histories",),
    "loss_decreases_for_each_method": ("histories",),
    "final_accuracy_reaches_threshold": ("histories",),
    "newton_diag_differs_from_newton": None,
    "comparison_figure_exists": "figures",
}


@pytest.mark.parametrize("check", sorted(ERRORED))
def test_check_scores_zero_and_says_what_was_raised(judge, correct, check) -> None:
    assert_errored_path(judge, correct, check, ERRORED[check])


def test_every_check_has_a_mistake_and_an_errored_path() -> None:
    names = set(CHECK_NAMES)
    assert names == set(ERRORED), names ^ set(ERRORED)
    assert names == {check for check, *_ in MISTAKES} | CATALOGUED, names ^ ({check for check, *_ in MISTAKES} | CATALOGUED)
    assert rubric_function(ASSIGNMENT, "PARAM_NAMES") == PARAM_NAMES
