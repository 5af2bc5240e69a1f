"""1C · Gaussian kernel (the figure check is left out: otter cannot read figures)."""
OK_FORMAT = False
from otter.test_files import test_case

name = "1C"
points = 22


def _reference(X1, X2, sigma):
    import numpy as np
    X1, X2 = np.asarray(X1, dtype=np.float64), np.asarray(X2, dtype=np.float64)
    d2 = (X1 ** 2).sum(1)[:, None] + (X2 ** 2).sum(1)[None, :] - 2 * X1 @ X2.T
    return np.exp(-np.maximum(d2, 0) / (2 * sigma ** 2))


def _train(train_set):
    import torch
    X = torch.stack([torch.as_tensor(train_set[i][0], dtype=torch.float32).reshape(-1) for i in range(len(train_set))])
    y = torch.tensor([int(train_set[i][1]) for i in range(len(train_set))])
    return X, y


@test_case(points=6)
def test_kernel_matches_reference(gaussian_kernel):
    import numpy as np
    import torch
    rng = np.random.default_rng(145)
    for n1, n2, d in ((5, 7, 3), (12, 9, 784), (8, 8, 16), (1, 4, 10)):
        X1, X2 = rng.normal(size=(n1, d)), rng.normal(size=(n2, d))
        sigma = float(np.sqrt(2 * d) * rng.uniform(0.4, 1.2))
        got = np.asarray(gaussian_kernel(torch.tensor(X1, dtype=torch.float32), torch.tensor(X2, dtype=torch.float32), sigma), dtype=np.float64)
        want = _reference(X1, X2, sigma)
        assert np.linalg.norm(got - want) / np.linalg.norm(want) <= 1e-4


@test_case(points=4)
def test_K_train_valid_kernel(K_train):
    import numpy as np
    K = np.asarray(K_train, dtype=np.float64)
    assert np.allclose(K, K.T, atol=1e-5) and np.allclose(np.diag(K), 1, atol=1e-5)
    assert np.linalg.eigvalsh((K + K.T) / 2).min() >= -1e-3


@test_case(points=3)
def test_K_train_matches_kernel_of_training_images(K_train, train_set, sigma):
    import numpy as np
    X, _ = _train(train_set)
    want = _reference(X.numpy(), X.numpy(), float(sigma))
    assert np.linalg.norm(np.asarray(K_train, dtype=np.float64) - want) / np.linalg.norm(want) <= 1e-3


@test_case(points=2)
def test_K_test_shape(K_test, K_train):
    assert tuple(K_test.shape) == (100, K_train.shape[0])


@test_case(points=2)
def test_kernel_model_takes_n_inputs(kernel_model, K_train):
    import torch
    assert tuple(kernel_model(torch.as_tensor(K_train[:3], dtype=torch.float32)).shape) == (3, 10)


@test_case(points=3)
def test_kernel_model_train_accuracy(kernel_model, K_train, train_set):
    import torch
    _, y = _train(train_set)
    with torch.no_grad():
        assert (kernel_model(torch.as_tensor(K_train, dtype=torch.float32)).argmax(1) == y).float().mean() >= 0.90


@test_case(points=2)
def test_kernel_model_test_accuracy(kernel_model, K_test, test_set):
    import torch
    _, y = _train(test_set)
    with torch.no_grad():
        assert (kernel_model(torch.as_tensor(K_test, dtype=torch.float32)).argmax(1) == y).float().mean() >= 0.50
