"""The built-in assignments, one package each (``docs/authoring.md``).

They ship inside ``graders`` because the student bundle and the Gradescope wheel need their
rubrics and probes; their reference solutions stay in the top-level ``reference`` package, which
neither ships. Each is registered in ``pyproject.toml`` under the ``nbgrade.assignments`` entry
point group and found only through it (:mod:`graders.registry`): nothing imports them by name.
"""
