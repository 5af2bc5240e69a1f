"""The Gradescope zip's scripts are files of the package, filled in by placeholder (graders/autograder_files/)."""

from __future__ import annotations

import re
import sys

import pytest

from graders.autograder import (
    CONFIG_FILE,
    FALLBACK_FILE,
    FALLBACK_SCRIPT,
    ZIP_FILES,
    autograder_config,
    run_script,
    setup_script,
    zip_file_text,
)
from tests.conftest import REPO

SCRIPTS = ("setup.sh", "run_autograder", FALLBACK_FILE)


def test_every_placeholder_is_filled_and_a_missing_value_is_refused():
    config = autograder_config("csci145-ps6")
    run = run_script(config)
    setup = setup_script("nbgrade_ml-0.1.0-py3-none-any.whl")
    for text in (run, setup, FALLBACK_SCRIPT):
        assert not re.search(r"@[A-Z_]+@", text)
    assert f"HARD_LIMIT={config.hard_limit_seconds}  # seconds: csci145-ps6's budget" in run
    assert f'"$PYTHON" -I -m graders.gradescope_main run --root "$ROOT" --config "$SOURCE/{CONFIG_FILE}"' in run
    assert '--no-deps "$SOURCE/nbgrade_ml-0.1.0-py3-none-any.whl"' in setup
    with pytest.raises(ValueError, match="no value for @CACHE@"):
        zip_file_text("setup.sh", VENV="/v", TORCH_INDEX="x", TORCH="torch", WHEEL="w")


def test_the_scripts_ship_as_package_data():
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        pytest.skip("tomllib needs Python 3.11")
    data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["graders"]
    assert f"{ZIP_FILES}/*" in data
    assert all((REPO / "graders" / ZIP_FILES / name).is_file() for name in SCRIPTS)


def test_the_fallback_script_compiles_and_imports_only_the_standard_library():
    compile(FALLBACK_SCRIPT, FALLBACK_FILE, "exec")
    imported = set(re.findall(r"^import (\w+)", FALLBACK_SCRIPT, re.M))
    assert imported <= set(sys.stdlib_module_names), imported - set(sys.stdlib_module_names)
