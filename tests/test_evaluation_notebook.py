"""Notebook 05 end to end on the embedded model, in Chinese and in both languages (papermill, 2 items per task and
language, every cyclic option order): it writes its results and handles the paper comparison, which exists for
English only."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from ec2er_utils.evaluation import load_run
from ec2er_utils.paths import REPO_ROOT
from tests.helpers import needs_emobench

NOTEBOOK = REPO_ROOT / "notebooks" / "05_evaluate.ipynb"


def _outputs(path: Path) -> str:
    text = []
    for cell in nbformat.read(path, 4).cells:
        for output in cell.get("outputs", []):
            text.append(output.get("text", "") if "text" in output else json.dumps(output.get("data", {})))
    return "\n".join(text)


@pytest.mark.slow
@needs_emobench
@pytest.mark.parametrize("language", ["zh", "all"])
def test_notebook_05_runs_in_chinese_and_in_both_languages(language, tmp_path, monkeypatch):
    import papermill

    monkeypatch.setenv("EC2ER_RESULTS_DIR", str(tmp_path / "results"))
    out = tmp_path / "05.ipynb"
    papermill.execute_notebook(str(NOTEBOOK), str(out), cwd=str(NOTEBOOK.parent), kernel_name="python3",
                               progress_bar=False, parameters={"language": language, "limit": 2, "adapter": None})
    run = load_run(tmp_path / "results" / "smollm2" / "choice")
    languages = ["zh"] if language == "zh" else ["en", "zh"]
    for task, shifts in (("EU", 6), ("EA", 4)):
        assert sorted(run.leaderboards[task]["languages"]) == languages
        for lang in languages:
            records = run.records(task, lang, all_orders=True)
            assert len(run.records(task, lang)) == 2 and len(records) >= 2 * shifts
            assert "orders" in run.leaderboards[task]["languages"][lang]
    printed = _outputs(out)
    if language == "zh":
        assert "reports English EmoBench only; this run is 'zh'" in printed
    else:
        assert "reports English EmoBench only" not in printed
        assert "Mistral" in printed  # the paper's columns beside ours
