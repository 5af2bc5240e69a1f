"""``python -I -m graders.gradescope_main run --root DIR --config FILE``: the zip's ``run_autograder`` calls this.

Only an entry point: :func:`graders.cli.autograder_main` parses the arguments (the CLI parses,
nothing else does) and calls :func:`graders.gradescope_run.run_autograder`.
"""

from __future__ import annotations

import sys

from graders.cli import autograder_main

if __name__ == "__main__":
    sys.exit(autograder_main(sys.argv[1:]))
