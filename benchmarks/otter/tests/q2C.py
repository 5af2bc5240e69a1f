"""2C · Depth comparison histories (the figure check is left out: otter cannot read figures)."""
OK_FORMAT = False
from otter.test_files import test_case

name = "2C"
points = 10


@test_case(points=5)
def test_histories_present(train_losses, test_losses):
    import math
    for depth in (1, 2, 3):
        train, test = list(train_losses[depth]), list(test_losses[depth])
        assert len(train) == len(test) >= 2 and all(math.isfinite(v) for v in train + test)


@test_case(points=5)
def test_training_loss_decreases(train_losses):
    for depth in (1, 2, 3):
        assert train_losses[depth][-1] < train_losses[depth][0]
