"""P2 reference: an MNIST dataset whose items are two independently augmented views.

Each item is ``(x1, x2, y)``: the same transform pipeline applied twice to image i, with
fresh randomness each time (torch's global generator, which DataLoader seeds differently in
every worker), and image i's integer label. The augmentations are mild on purpose — a
resized crop keeping ≥ 90% of the area, a rotation of at most ±8° and, half the time, an
erased patch of 2–5% of the image — so that each view still correlates with its own source
image more than with other digits (the two views must stay the *same* example for a
self-supervised objective to make sense). Measured on 800 training digits: every view
correlates more with its source than with the average other image, and in 99% of groups of
8 its source is the best-correlated image. Pixel correlation is unforgiving of shifts: adding a
±2 px translation drops that figure to about 75% among 400 digits, which is why there is none.

Everything here is a module-level class or a torchvision transform object, so the dataset
pickles, and a ``DataLoader`` with ``num_workers > 0`` works under both fork and spawn.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset
from torchvision.datasets import MNIST
from torchvision.transforms import v2

__all__ = [
    "IMAGE_SIDE",
    "MNISTTwoView",
    "make_image_transform",
    "make_two_view_transform",
    "make_two_view_dataset",
    "measure_view_resemblance",
]

IMAGE_SIDE = 28
"""MNIST images are 28×28; views keep that size so they stack with the originals."""

Transform = Callable[[Any], torch.Tensor]


def make_image_transform() -> v2.Compose:
    """Return the deterministic conversion of a PIL image, array or tensor to 1×28×28 float in [0, 1]."""
    return v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True)])


def make_two_view_transform() -> v2.Compose:
    """Return the random augmentation applied to make each view (same pipeline for x1 and x2)."""
    return v2.Compose(
        [
            make_image_transform(),
            v2.RandomResizedCrop(IMAGE_SIDE, scale=(0.9, 1.0), ratio=(0.95, 1.05), antialias=True),
            v2.RandomAffine(degrees=8),
            v2.RandomErasing(p=0.5, scale=(0.02, 0.05), ratio=(0.5, 2.0), value=0.0),
        ]
    )


class MNISTTwoView(Dataset):
    """Item i is ``(x1, x2, y)``: two independent augmentations of image i and its label.

    ``base`` is anything indexable returning ``(image, label)`` with the image a PIL image,
    a NumPy array or a tensor (e.g. ``torchvision.datasets.MNIST`` without a transform);
    it stays available as ``self.base`` so callers can show the originals.
    """

    def __init__(self, base: Sequence[tuple[Any, int]], transform: Transform | None = None) -> None:
        self.base = base
        self.transform = transform if transform is not None else make_two_view_transform()
        self.to_image = make_image_transform()

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        image, label = self.base[index]
        return self.transform(image), self.transform(image), int(label)

    def original(self, index: int) -> torch.Tensor:
        """Return image ``index`` un-augmented, as the views' 1×28×28 float tensor in [0, 1]."""
        image, _ = self.base[index]
        return self.to_image(image)


def make_two_view_dataset(root: Path | str, train: bool = True) -> MNISTTwoView:
    """Return ``MNISTTwoView`` over torchvision's MNIST in ``root`` (which must already hold it).

    ``download=True`` only makes torchvision check ``root/MNIST/raw``; on an offline machine
    the files must be there (``graders.mnist.ensure_mnist`` provisions them).
    """
    return MNISTTwoView(MNIST(str(root), train=train, download=True))


def _centred_unit_rows(images: torch.Tensor) -> torch.Tensor:
    """Flatten each image, remove its mean and scale to unit norm: row dot products = correlations."""
    rows = images.reshape(images.shape[0], -1).to(torch.float64)
    rows = rows - rows.mean(dim=1, keepdim=True)
    return rows / rows.norm(dim=1, keepdim=True).clamp_min(1e-12)


def measure_view_resemblance(
    dataset: MNISTTwoView, seed: int, n_images: int = 256, group_size: int = 8
) -> dict[str, float]:
    """Measure how much the first view of an item resembles its own source image.

    Draws ``n_images`` seeded random items (views drawn under ``torch.manual_seed(seed)``,
    with the caller's RNG state restored afterwards) and correlates each view with every
    source. Returns the fraction of views more correlated with their source than with the
    average source (``"above_mean_other"``) and the fraction whose source is the best match
    within consecutive groups of ``group_size`` items, like one minibatch (``"best_in_group"``).
    """
    n_images -= n_images % group_size
    picker = torch.Generator().manual_seed(seed)
    indices = torch.randperm(len(dataset), generator=picker)[:n_images].tolist()
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        views = torch.stack([dataset[i][0] for i in indices])
    sources = torch.stack([dataset.original(i) for i in indices])
    corr = _centred_unit_rows(views) @ _centred_unit_rows(sources).T
    own = corr.diagonal()
    groups = n_images // group_size
    blocks = corr.reshape(groups, group_size, groups, group_size).diagonal(dim1=0, dim2=2)
    best = blocks.permute(2, 0, 1).argmax(dim=2) == torch.arange(group_size)
    return {
        "above_mean_other": float((own > corr.mean(dim=1)).to(torch.float64).mean()),
        "best_in_group": float(best.to(torch.float64).mean()),
    }
