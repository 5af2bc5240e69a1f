"""2A · Sigmoid derivative against autograd, including large |z|."""
OK_FORMAT = False
from otter.test_files import test_case

name = "2A"
points = 5


@test_case(points=3)
def test_matches_autograd(sigmoid_derivative):
    import torch
    g = torch.Generator().manual_seed(145)
    for z in (torch.randn(7, generator=g) * 3, torch.randn(4, 5, generator=g) * 2):
        z = z.clone().requires_grad_(True)
        torch.sigmoid(z).sum().backward()
        got = torch.as_tensor(sigmoid_derivative(z.detach().clone()), dtype=torch.float32)
        assert torch.allclose(got, z.grad, rtol=1e-5, atol=1e-7)


@test_case(points=2)
def test_stable_at_large_inputs(sigmoid_derivative):
    import torch
    z = torch.tensor([-1000.0, -710.0, -50.0, 0.0, 50.0, 710.0, 1000.0])
    got = torch.as_tensor(sigmoid_derivative(z))
    assert torch.isfinite(got).all() and got.min() >= 0 and abs(float(got[3]) - 0.25) < 1e-6
