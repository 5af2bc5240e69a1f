"""1A · Loading MNIST: the checks graders/assignments/csci145_ps6/rubric.py makes, written as an otter test file."""
OK_FORMAT = False
from otter.test_files import test_case

name = "1A"
points = 10


def _images(dataset):
    import torch
    return torch.stack([torch.as_tensor(dataset[i][0], dtype=torch.float32).reshape(-1) for i in range(len(dataset))])


@test_case(points=2)
def test_lengths(train_set, test_set):
    assert len(train_set) == 1000 and len(test_set) == 100


@test_case(points=2)
def test_items_are_image_label_pairs(train_set):
    image, label = train_set[0]
    assert tuple(image.shape) in ((1, 28, 28), (784,)) and int(label) == label


@test_case(points=2)
def test_test_images_not_in_train(train_set, test_set):
    train = {tuple(row.tolist()) for row in _images(train_set)}
    assert not any(tuple(row.tolist()) in train for row in _images(test_set))


@test_case(points=2)
def test_random_draws(train_set):
    from torchvision import datasets, transforms
    mnist = datasets.MNIST("data", train=True, download=False, transform=transforms.ToTensor())
    first = _images([mnist[i] for i in range(1000)])
    assert not bool((first == _images(train_set)).all())


@test_case(points=2)
def test_loaders_cover_sets_once(train_loader, test_loader, train_set, test_set):
    for loader, dataset in ((train_loader, train_set), (test_loader, test_set)):
        seen = 0
        for images, labels in loader:
            assert len(images) == len(labels)
            seen += len(images)
        assert seen == len(dataset)
