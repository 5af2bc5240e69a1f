"""What the grader reads back from a folder the kernel can write: no link, device, hard link or
oversized file is followed or loaded, and what is created for the kernel is never an old entry."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from graders.hostfs import (
    ReadLimits,
    UnsafeEntry,
    load_array,
    make_directory,
    open_directory,
    read_probe_output,
    read_regular_file,
    write_new_file,
)


@pytest.fixture()
def folder(tmp_path):
    fd = open_directory(tmp_path)
    yield tmp_path, fd
    os.close(fd)


def test_a_planted_symlink_is_not_followed(folder, tmp_path_factory):
    path, fd = folder
    secret = tmp_path_factory.mktemp("host") / "secret.txt"
    secret.write_text("host data")
    (path / "values.json").symlink_to(secret)
    assert read_regular_file(fd, "values.json", 1000) is None


def test_a_fifo_a_hard_link_and_an_oversized_file_are_refused(folder):
    path, fd = folder
    os.mkfifo(path / "fifo.npy")
    assert read_regular_file(fd, "fifo.npy", 1000) is None  # and did not block
    (path / "big.txt").write_bytes(b"x" * 2000)
    assert read_regular_file(fd, "big.txt", 1000) is None
    (path / "one.txt").write_text("1")
    os.link(path / "one.txt", path / "two.txt")
    assert read_regular_file(fd, "two.txt", 1000) is None


def test_a_file_of_another_owner_is_refused(folder):
    path, fd = folder
    (path / "mine.txt").write_text("ok")
    assert read_regular_file(fd, "mine.txt", 100, owner=os.getuid()) == b"ok"
    assert read_regular_file(fd, "mine.txt", 100, owner=os.getuid() + 1) is None


def test_names_with_separators_or_dot_dot_are_refused(folder):
    path, fd = folder
    assert read_regular_file(fd, "../etc/passwd", 10**6) is None
    with pytest.raises(UnsafeEntry):
        write_new_file(fd, "a/b", b"")
    with pytest.raises(UnsafeEntry):
        open_directory(path, ("..",))


def test_a_directory_walk_refuses_a_linked_component(folder, tmp_path_factory):
    path, _ = folder
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    (path / "out").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(OSError):
        open_directory(path, ("out",))


def test_new_files_and_folders_never_reuse_an_entry(folder, tmp_path_factory):
    path, fd = folder
    target = tmp_path_factory.mktemp("host") / "target"
    target.write_text("unchanged")
    (path / "params.json").symlink_to(target)
    with pytest.raises(FileExistsError):
        write_new_file(fd, "params.json", b"{}")
    assert target.read_text() == "unchanged"
    (path / "part").symlink_to(target.parent, target_is_directory=True)
    with pytest.raises(FileExistsError):
        make_directory(fd, "part")


def test_arrays_are_checked_before_they_are_loaded(folder):
    path, fd = folder
    header_only = np.lib.format.magic(1, 0) + b"{'descr': '<f8', 'fortran_order': False, 'shape': (100000, 100000), }".ljust(118) + b"\n"
    assert load_array(header_only, max_bytes=10**6) is None  # 80 GB declared: refused from the header
    for index in range(5):
        np.save(path / f"a{index}.npy", np.zeros(1000))
    np.save(path / "objects.npy", np.array([None], dtype=object), allow_pickle=True)
    (path / "values.json").write_text(json.dumps({"arrays": [f"a{i}" for i in range(5)] + ["objects", "../../x"]}))
    values, arrays, refused = read_probe_output(fd, ReadLimits(arrays=3, total_bytes=10**6), None)
    assert set(arrays) == {"a0", "a1", "a2"} and len(refused) == 3  # two over the count, one object array


def test_deeply_nested_json_is_refused_not_raised(folder):
    path, fd = folder
    (path / "values.json").write_text("[" * 100000 + "]" * 100000)
    assert read_probe_output(fd, ReadLimits(), None)[0] is None


def test_a_tree_nested_past_the_recursion_limit_is_removed(tmp_path):
    import sys

    from graders.workspace import remove_tree

    root = tmp_path / "sandbox"
    fd = os.open(tmp_path, os.O_RDONLY)
    os.mkdir(root)
    current = os.open(root, os.O_RDONLY)
    os.close(fd)
    for _ in range(sys.getrecursionlimit() + 200):  # made by descriptors: the path would exceed PATH_MAX
        os.mkdir("d", dir_fd=current)
        nested = os.open("d", os.O_RDONLY, dir_fd=current)
        os.close(current)
        current = nested
    os.close(current)
    remove_tree(root)
    assert not root.exists()
