"""The public API as type checkers see it: every name dicomscu exports at run time is imported for them under
TYPE_CHECKING from the same module, a wrong argument is a type error, and the README's example passes
`mypy --strict`."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import dicomscu

ROOT = Path(__file__).resolve().parents[1]


def test_type_checkers_see_every_runtime_export_from_its_module():
    tree = ast.parse((ROOT / "src" / "dicomscu" / "__init__.py").read_text())
    seen = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING":
            for statement in node.body:
                assert isinstance(statement, ast.ImportFrom)
                for alias in statement.names:
                    assert alias.asname == alias.name  # an explicit re-export
                    seen[alias.name] = statement.module
    exports = dicomscu._EXPORTS  # type: ignore[attr-defined]
    assert seen == exports
    for name in exports:
        assert getattr(dicomscu, name) is not None


def test_a_wrong_argument_is_a_type_error_and_the_readme_and_api_guide_examples_are_clean(tmp_path):
    """One mypy --strict run over three files: a call with a wrong argument, the README's example, and every
    example of docs/api.md in order (a later one uses what an earlier one made)."""
    import os

    readme = (ROOT / "README.md").read_text()
    example = re.search(r"## Python API\n\n```python\n(.*?)```", readme, re.S).group(1)  # type: ignore[union-attr]
    guide = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "api.md").read_text(), re.S)
    assert len(guide) >= 8
    (tmp_path / "wrong.py").write_text('import dicomscu\n\ndicomscu.echo("not a peer")\n')
    (tmp_path / "example.py").write_text(example)
    (tmp_path / "guide.py").write_text("\n".join(guide))
    result = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--follow-imports=silent", "--no-incremental",
                             "--cache-dir", str(tmp_path / ".mypy"), "wrong.py", "example.py", "guide.py"],
                            capture_output=True, text=True, cwd=tmp_path,
                            env={**os.environ, "MYPYPATH": str(ROOT / "src")})  # this checkout's package
    errors = [line for line in result.stdout.splitlines() if ": error:" in line]
    assert [line.split(":")[0] for line in errors] == ["wrong.py"], result.stdout
    assert 'incompatible type "str"; expected "Peer"' in errors[0]


def test_the_names_options_take_are_types_equal_to_the_runtime_tables(tmp_path):
    """A misspelt model, level or layout is a type error (dicomscu/choices.py), and each Literal lists exactly
    the names the runtime knows."""
    import os
    from typing import get_args

    from dicomscu import choices
    from dicomscu.cli.options import OPTIONS
    from dicomscu.query.model import MODELS

    assert set(choices.MODEL_NAMES) == set(MODELS)
    levels = {level.name for model in MODELS.values() for level in model.levels}
    assert set(get_args(choices.LevelName)) == levels | {level.lower() for level in levels}
    format_option = next(option for option in OPTIONS if "--format" in option.flags)
    layout_option = next(option for option in OPTIONS if "--layout" in option.flags)
    assert tuple(format_option.read["choices"]) == choices.FORMATS
    assert tuple(layout_option.read["choices"]) == choices.LAYOUTS
    (tmp_path / "misspelt.py").write_text(
        'import dicomscu\nfrom pydicom.dataset import Dataset\n\n'
        'dicomscu.build_query("studyrot", "study", [])\n'
        'dicomscu.RetrieveOptions(layout="tree")\n'
        'def named(answer: Dataset) -> None: ...\n'
        'peer, query = dicomscu.Peer("pacs"), dicomscu.build_query("studyroot", "study", [])\n'
        'dicomscu.find(peer, query, on_answer=named)\n'  # a Dataset each: right
        'dicomscu.find(peer, query, on_answer=named, raw=True)\n')  # raw answers are not Datasets: wrong
    result = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--follow-imports=silent", "--no-incremental",
                             "--cache-dir", str(tmp_path / ".mypy"), "misspelt.py"], capture_output=True, text=True,
                            cwd=tmp_path, env={**os.environ, "MYPYPATH": str(ROOT / "src")})
    errors = [line for line in result.stdout.splitlines() if ": error:" in line]
    assert [line.split(":")[1] for line in errors] == ["4", "5", "9"], result.stdout
    assert "studyrot" in errors[0] and "tree" in errors[1] and "find" in errors[2], result.stdout
