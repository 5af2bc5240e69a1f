"""1B · Logistic regression (the figure check is left out: otter cannot read figures)."""
OK_FORMAT = False
from otter.test_files import test_case

name = "1B"
points = 16


@test_case(points=4)
def test_parameters_784_by_10(logreg_model):
    shapes = sorted(tuple(p.shape) for p in logreg_model.parameters() if p.dim() == 2)
    assert shapes in ([(10, 784)], [(784, 10)])


@test_case(points=4)
def test_outputs_batch_by_10(logreg_model):
    import torch
    assert tuple(logreg_model(torch.rand(5, 1, 28, 28)).shape) == (5, 10)


@test_case(points=4)
def test_losses_100_decreasing(logreg_losses):
    import math
    assert len(logreg_losses) == 100 and all(math.isfinite(x) for x in logreg_losses)
    assert logreg_losses[-1] < logreg_losses[0]


@test_case(points=4)
def test_accuracy_on_held_back(logreg_model):
    import numpy as np
    import torch
    from torchvision import datasets, transforms
    mnist = datasets.MNIST("data", train=False, download=False, transform=transforms.ToTensor())
    pick = np.random.default_rng(145).choice(len(mnist), size=500, replace=False)
    images = torch.stack([mnist[int(i)][0] for i in pick])
    labels = torch.tensor([mnist[int(i)][1] for i in pick])
    with torch.no_grad():
        accuracy = (logreg_model(images).argmax(1) == labels).float().mean().item()
    assert accuracy >= 0.70, accuracy
