"""The quickstart notebook runs top to bottom, as a notebook kernel would run it."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

NOTEBOOK = Path(__file__).parents[2] / "notebooks" / "quickstart.ipynb"


async def test_quickstart_notebook_runs_inside_an_event_loop() -> None:
    cells = json.loads(NOTEBOOK.read_text())["cells"]
    namespace: dict[str, Any] = {}
    results = []
    for number, cell in enumerate(cells):
        if cell["cell_type"] != "code":
            continue
        source = "".join(cell["source"])
        tree = ast.parse(source, mode="exec")
        last = tree.body[-1] if tree.body else None
        if isinstance(last, ast.Expr):  # a notebook shows the last expression
            tree.body[-1] = ast.Assign(
                targets=[ast.Name("_cell_result", ast.Store())], value=last.value
            )
            ast.fix_missing_locations(tree)
        code = compile(
            tree, f"cell-{number}", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
        )
        outcome = eval(code, namespace)  # the project's own notebook
        if outcome is not None:
            await outcome
        results.append(namespace.pop("_cell_result", None))
    shape, endpoint = results[1]
    assert shape == (3, 1024)
    assert endpoint.startswith("amazonbedrock-text-embedding")
    assert results[2] == "The with statement wraps a block with a context manager."
    assert "block" in results[3]
