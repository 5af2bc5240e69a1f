"""2B · make_mlp: weight shapes per depth, ReLU placement, output against the formula."""
OK_FORMAT = False
from otter.test_files import test_case

name = "2B"
points = 15


def _weights(model):
    return [p for p in model.parameters() if p.dim() == 2]


@test_case(points=5)
def test_weight_shapes(make_mlp):
    for layers, (d, m, k) in zip((1, 2, 3, 4), ((5, 7, 3), (9, 4, 6), (3, 8, 5), (6, 6, 2))):
        shapes = [tuple(w.shape) for w in _weights(make_mlp(layers, d, m, k))]
        want = [(k, d)] if layers == 1 else [(m, d)] + [(m, m)] * (layers - 2) + [(k, m)]
        assert shapes == want, (layers, shapes)


@test_case(points=5)
def test_relu_between_layers(make_mlp):
    import torch
    leaves = [m for m in make_mlp(3, 5, 7, 3).modules() if not list(m.children())]
    assert sum(isinstance(m, torch.nn.ReLU) for m in leaves) == 2 and not isinstance(leaves[-1], torch.nn.ReLU)


@test_case(points=5)
def test_output_matches_formula(make_mlp):
    import torch
    torch.manual_seed(145)
    for layers in (1, 2, 3, 4):
        model = make_mlp(layers, 6, 5, 4)
        x = torch.randn(8, 6)
        h = x
        weights = _weights(model)
        for i, w in enumerate(weights):
            h = h @ w.T
            if i < len(weights) - 1:
                h = torch.relu(h)
        with torch.no_grad():
            assert torch.allclose(model(x), h, rtol=1e-4, atol=1e-5)
