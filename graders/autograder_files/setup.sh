#!/usr/bin/env bash
# Gradescope runs this once, as root, when it builds the autograder image (Ubuntu base image).
set -euxo pipefail
export DEBIAN_FRONTEND=noninteractive
SOURCE=/autograder/source
apt-get update
apt-get install -y --no-install-recommends python3 python3-venv python3-pip ca-certificates
python3 -m venv @VENV@
@VENV@/bin/python -m pip install --upgrade pip
# CPU-only PyTorch (the CUDA wheels are gigabytes and Gradescope has no GPU), then the rest from PyPI.
@VENV@/bin/python -m pip install --index-url @TORCH_INDEX@ @TORCH@
@VENV@/bin/python -m pip install -r "$SOURCE/requirements.txt"
@VENV@/bin/python -m pip install --no-deps "$SOURCE/@WHEEL@"
# MNIST now, at build time: nothing is downloaded while grading.
mkdir -p @CACHE@
NBGRADE_CACHE=@CACHE@ @VENV@/bin/grade data
chmod -R a+rX @CACHE@ @VENV@
# Only root (the grader) reads the harness, the assignment's packages, the reference solutions and
# this directory; the students' kernels run as another user.
SITE=$(@VENV@/bin/python -c "import graders, os; print(os.path.dirname(os.path.dirname(graders.__file__)))")
for NAME in @TOP_LEVEL@; do chmod 700 "$SITE/$NAME"; done
chmod 700 "$SOURCE"
