"""Figures (issue 7): every figure from small fixture results written in the formats the modules write, byte-identical
re-runs, and skips (never fakes) when inputs are missing."""

from __future__ import annotations

import hashlib
import json
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ec2er_utils import figures
from ec2er_utils.formatting import LETTERS
from ec2er_utils.jsonl import write_json_atomic
from ec2er_utils.paths import REPO_ROOT
from tests.helpers import SHARED, needs_emobench

ALL_FIGURES = {"pipeline_overview", "table1_paper", "table1_choice", "finetune_gain_choice", "dataset_categories",
               "answer_letters", "preprocess_drops", "mads_dialogues", "training_loss"}


# --------------------------------------------------------------------------------------------------------------
# Fixture results, written by the modules' own writers where that is cheap


class SeededScorer:
    """Stands in for ChoiceScorer (which needs a model): seeded letter log-probabilities, the gold letter favoured
    with probability ``skill``. Only its output is scripted; evaluate() writes every file for real."""

    def __init__(self, skill: float, seed: int):
        self.skill = skill
        self.rng = random.Random(seed)

    def option_logprobs(self, questions, **_options):  # e.g. progress=, which a stand-in has no use for
        scores = []
        for question in questions:
            letters = LETTERS[:len(question.options)]
            values = {letter: -1.0 - self.rng.random() for letter in letters}
            if self.rng.random() < self.skill:
                values[letters[question.answer_index]] = -0.1
            scores.append(values)
        return scores


def write_evaluations(results: Path, runs: Path, monkeypatch, limit: int = 12) -> None:
    """A base and a fine-tuned ``choice`` run of mistral (real ``evaluate``, scripted scores), in results/."""
    from ec2er_utils.evaluation import EvalConfig, evaluate

    monkeypatch.setenv("EC2ER_RESULTS_DIR", str(results))
    monkeypatch.setenv("EC2ER_RUNS_DIR", str(runs))
    adapter = runs / "mistral" / "20250101-000000" / "adapter"
    adapter.mkdir(parents=True)
    tuned = EvalConfig(model="mistral", adapter=adapter, protocol="choice", emobench_dir=SHARED / "emobench",
                       limit=limit, n_resamples=200)
    evaluate(tuned.base_model(), scorer=SeededScorer(0.2, 1), progress=False)
    evaluate(tuned, scorer=SeededScorer(0.6, 2), progress=False)


def mcq_item(number: int, category: str, words: int = 60) -> dict:
    """An item as the concise pipeline writes it (``schemas.DatasetItem``, source_format "mcq"), as a JSON row."""
    rng = random.Random(number)
    vocabulary = ["river", "letter", "sister", "garden", "promise", "morning", "window", "market", "silence",
                  "ticket", "kitchen", "friend", "winter", "office", "message", "doctor", "street", "teacher"]
    scenario = f"Scenario {number}: " + " ".join(rng.choice(vocabulary) for _ in range(words)) + "."
    return {"item_id": f"m{number}", "task": "EU", "category": category, "source_format": "mcq",
            "scenario": scenario, "question": "Which emotion does the person most likely feel at the end?",
            "options": ["Relief", "Anger", "Fear", "Boredom"], "correct_answer": "Relief",
            "explanation": "The good news lifts the weight off them, and the long breath shows relief.",
            "pipeline": "concise", "generator_model": "hand-written", "persona_id": f"p{number % 3}"}


def write_preprocess_report(data: Path) -> Path:
    """data/processed/preprocess_report.json by the real chapter 03 (``run_preprocess``) from a fixture file."""
    from ec2er_utils import preprocess as pp

    categories = ["complex_emotions", "emotional_cues", "perspective_taking", "personal_beliefs_and_experiences"]
    rows = [mcq_item(n, categories[n % 4]) for n in range(14)]
    rows += [mcq_item(100, "emotional_cues", words=5),  # too short: dropped by validation
             mcq_item(0, "complex_emotions") | {"item_id": "dup"}]  # a duplicate scenario: dropped by dedup
    fixture = data / "concise" / "fixture.jsonl"
    fixture.parent.mkdir(parents=True, exist_ok=True)
    fixture.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    config = pp.PreprocessConfig(inputs=[str(fixture)], output_dir=str(data / "processed"), balance_min_cap=1,
                                 validation_fraction=0.25, workers=1, judge_backend=None)
    return pp.run_preprocess(config, references=[]).paths["report"]


def write_mads_metadata(data: Path) -> None:
    """data/mads/ written by the real MADS runner; only the model's replies are scripted (the generation tests'
    backend), with stop points and a few failed backgrounds varying by dialogue."""
    from ec2er_utils.generation.mads import MADSConfig, run_mads
    from ec2er_utils.personas import grid_personas
    from ec2er_utils.themes import THEMES
    from tests.generation_backend import ScriptedGenerationClient, request_error

    def digest(text: str) -> int:
        return int(hashlib.sha256(text.encode()).hexdigest(), 16)

    stop_points: dict[str, int | None] = {}

    def criteria_at(conversation):  # the turn from which the supervisor is satisfied; None: never (max_turns)
        dialogue = re.search(r"\[(\w+)\]", conversation[-1]["content"]).group(1)  # the client's tag
        return stop_points.setdefault(dialogue, (None, 4, 6, 8)[len(stop_points) % 4])  # in turn, by first sight

    def fail(agent, conversation):
        return request_error() if agent == "background" and digest(conversation[-1]["content"]) % 7 == 0 else None

    config = MADSConfig(num_dialogues=12, concurrency=4, checkpoint_every=4, max_turns=10)
    run_mads(ScriptedGenerationClient(criteria_at=criteria_at, fail=fail), grid_personas(20, seed=1), THEMES,
             data / "mads", config, progress=False)


def write_loss_histories(runs: Path) -> None:
    """runs/<model>/<run-id>/loss_history.json as training.save_run writes it (training.loss_history's format)."""
    for model, run_id, start in (("smollm2", "20250101-000000", 2.5), ("smollm2", "20250102-000000", 2.2),
                                 ("mistral", "20250103-000000", 1.4)):
        train = [{"step": s, "epoch": s / 10, "loss": start / (1 + 0.1 * s), "learning_rate": 2e-4} for s in
                 range(1, 11)]
        evaluation = [{"step": s, "epoch": s / 10, "eval_loss": start / (1 + 0.08 * s)} for s in (0, 10)]
        write_json_atomic(runs / model / run_id / "loss_history.json", {"train": train, "eval": evaluation})


@pytest.fixture(scope="module")
def fixture_tree(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("inputs")
    tree = {name: root / name for name in ("results", "runs", "data")}
    with pytest.MonkeyPatch.context() as monkeypatch:
        if SHARED is not None and (SHARED / "emobench").is_dir():
            write_evaluations(tree["results"], tree["runs"], monkeypatch)
    write_preprocess_report(tree["data"])
    write_mads_metadata(tree["data"])
    write_loss_histories(tree["runs"])
    return tree


def make(tree: dict[str, Path], out: Path) -> figures.FigureReport:
    config = figures.FiguresConfig(figures_dir=out, results_dir=tree["results"], runs_dir=tree["runs"],
                                   data_dir=tree["data"])
    return figures.make_figures(config, verbose=False)


# --------------------------------------------------------------------------------------------------------------
# Tests


def assert_images(paths: list[Path]) -> None:
    assert sorted(p.suffix for p in paths) == [".pdf", ".png"]
    for path in paths:
        data = path.read_bytes()
        assert len(data) > 5000, path
        assert data.startswith(b"\x89PNG" if path.suffix == ".png" else b"%PDF"), path


@needs_emobench
def test_every_figure_from_fixture_results_is_written_and_deterministic(fixture_tree, tmp_path):
    report = make(fixture_tree, tmp_path / "a")
    assert set(report.made) == ALL_FIGURES, report
    assert report.skipped == {}
    for paths in report.made.values():
        assert_images(paths)
    assert any("mistral fine-tuned" in note for note in report.notes["table1_choice"])
    # a re-run in a fresh interpreter (another hash seed, nothing cached) writes the same bytes
    script = ("import sys; from ec2er_utils.figures import FiguresConfig, make_figures; make_figures(FiguresConfig("
              "figures_dir=sys.argv[1], results_dir=sys.argv[2], runs_dir=sys.argv[3], data_dir=sys.argv[4]))")
    subprocess.run([sys.executable, "-c", script, str(tmp_path / "b"), *(str(fixture_tree[k]) for k in
                                                                          ("results", "runs", "data"))],
                   check=True, cwd=REPO_ROOT, capture_output=True, timeout=300)
    first = {p.name: p.read_bytes() for p in (tmp_path / "a").iterdir()}
    second = {p.name: p.read_bytes() for p in (tmp_path / "b").iterdir()}
    assert first.keys() == second.keys() and len(first) == 2 * len(ALL_FIGURES)
    assert [name for name in first if first[name] != second[name]] == []
    # no timestamps or versions in the files
    assert b"CreationDate" not in first["table1_paper.pdf"] and b"Matplotlib" not in first["table1_paper.pdf"]
    assert b"Software" not in first["table1_paper.png"]


def test_without_results_only_the_input_free_figures_are_made_and_the_rest_say_why(tmp_path):
    empty = {name: tmp_path / name for name in ("results", "runs", "data")}
    report = make(empty, tmp_path / "figures")
    assert set(report.made) == {"pipeline_overview", "table1_paper"}
    assert set(report.skipped) == {"table1_<protocol>", "finetune_gain_<protocol>", "dataset_categories",
                                   "answer_letters", "preprocess_drops", "mads_dialogues", "training_loss"}
    assert "05_evaluate" in report.skipped["table1_<protocol>"]
    assert "03_preprocess" in report.skipped["dataset_categories"]
    assert "01_mads" in report.skipped["mads_dialogues"]
    assert "04_train" in report.skipped["training_loss"]
    assert sorted(p.name for p in (tmp_path / "figures").iterdir()) == [
        "pipeline_overview.pdf", "pipeline_overview.png", "table1_paper.pdf", "table1_paper.png"]
    assert "skipped  training_loss" in str(report)


def test_a_stale_figure_of_a_skipped_input_is_removed_and_other_files_are_kept(tmp_path):
    out = tmp_path / "figures"
    write_loss_histories(tmp_path / "runs")
    report = make({"results": tmp_path / "none", "runs": tmp_path / "runs", "data": tmp_path / "none"}, out)
    assert "training_loss" in report.made
    (out / "README.md").write_text("kept")
    (out / "table1_official.png").write_bytes(b"old")  # from an earlier run whose results are gone
    report = make({"results": tmp_path / "none", "runs": tmp_path / "none", "data": tmp_path / "none"}, out)
    assert {p.name for p in report.removed} == {"training_loss.png", "training_loss.pdf", "table1_official.png"}
    assert (out / "README.md").read_text() == "kept"


def test_malformed_inputs_skip_their_figure_naming_the_file(tmp_path):
    (tmp_path / "data" / "mads").mkdir(parents=True)
    (tmp_path / "data" / "mads" / "metadata.jsonl").write_text('{"turns": 3}\n{"turns": 4, "stop')
    (tmp_path / "data" / "processed").mkdir()
    (tmp_path / "data" / "processed" / "preprocess_report.json").write_text(json.dumps({"inputs": []}))
    (tmp_path / "runs" / "m" / "r1").mkdir(parents=True)
    (tmp_path / "runs" / "m" / "r1" / "loss_history.json").write_text('{"train": []}')
    report = make({"results": tmp_path / "none", "runs": tmp_path / "runs", "data": tmp_path / "data"},
                  tmp_path / "figures")
    assert "metadata.jsonl, line 1: no stop_reason, status" in report.skipped["mads_dialogues"]
    assert "preprocess_report.json: no 'steps' list" in report.skipped["dataset_categories"]
    assert "loss_history.json: expected" in report.skipped["training_loss"]


def test_each_plot_function_on_its_own(fixture_tree, tmp_path):
    data, runs = fixture_tree["data"], fixture_tree["runs"]
    report = figures.load_preprocess_report(data)
    built = {"pipeline_overview": figures.plot_pipeline(), "table1_paper": figures.plot_table1_paper(),
             "dataset_categories": figures.plot_dataset_categories(report),
             "answer_letters": figures.plot_answer_letters(report),
             "preprocess_drops": figures.plot_preprocess_drops(report),
             "mads_dialogues": figures.plot_mads_dialogues(figures.load_mads_metadata(data)),
             "training_loss": figures.plot_training_loss(figures.load_loss_histories(runs, max_runs_per_model=1))}
    for name, figure in built.items():
        assert_images(figures.save_figure(figure, tmp_path, name))
    # what the figures show comes from the inputs
    steps = {row["step"]: row for row in figures.drop_rows(report)}
    assert steps["scenario length"]["by_reason"] == {"scenario_too_short": 1}
    assert steps["de-duplication"]["by_reason"] == {"near_duplicate": 1}
    histories = figures.load_loss_histories(runs, max_runs_per_model=1)
    assert {model: list(h) for model, h in histories.items()} == {"mistral": ["20250103-000000"],
                                                                   "smollm2": ["20250102-000000"]}
    with pytest.raises(ValueError, match="figure names"):
        figures.save_figure(built["table1_paper"], tmp_path, "../escape")


def _assert_legend_inside(figure) -> None:
    """The shared legend is drawn within the figure: none of its entries is cut off at an edge."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure).draw()
    box = figure.legends[0].get_window_extent()
    assert 0 <= box.x0 and box.x1 <= figure.bbox.width and 0 <= box.y0, (box, figure.bbox)


@needs_emobench
def test_evaluation_runs_are_read_as_base_and_fine_tuned(fixture_tree):
    entries = figures.load_evaluations(fixture_tree["results"])
    assert sorted((e.alias, e.fine_tuned, e.protocol) for e in entries) == [("mistral", False, "choice"),
                                                                           ("mistral", True, "choice")]
    deltas, notes = figures.finetune_deltas(entries, "choice")
    assert notes == []
    overall = deltas[(deltas["task"] == "EA") & (deltas["category"] == "Overall")
                     & (deltas["metric"] == "correct")].iloc[0]
    assert overall["n"] == 12 and overall["ci_low"] <= overall["delta"] <= overall["ci_high"]
    # the fixture runs were asked under every option order: the robust metric is compared too, with the change
    # the letter habit alone would give (the own-letters baseline of tuned minus base, from the leaderboards)
    assert set(deltas["metric"]) == {"correct", "order_mean"}
    robust = deltas[(deltas["task"] == "EA") & (deltas["category"] == "Overall")
                    & (deltas["metric"] == "order_mean")].iloc[0]
    base, tuned = sorted(entries, key=lambda e: e.fine_tuned)
    own = [e.summary("EA", "en")["orders"]["order_mean"]["Overall"]["baselines"]["own_letters"] for e in (base, tuned)]
    assert robust["letter_habit_delta"] == pytest.approx(own[1] - own[0])
    assert robust["accuracy_b"] == tuned.summary("EA", "en")["orders"]["order_mean"]["Overall"]["accuracy"]
    figure = figures.plot_table1_ours(entries, "choice")
    legend = [text.get_text() for text in figure.legends[0].get_texts()]
    assert {"ours base", "ours fine-tuned", "ours base, over orders", "always A", "majority gold letter",
            "chance"} <= set(legend)
    _assert_legend_inside(figure)
    gain = figures.plot_finetune_gain(deltas, "choice")
    assert len(gain.axes) == 4 and "averaged over option orders" in gain.axes[2].get_title()
    # an adapter that changed nothing (every difference 0, as the CPU demo's can): an axis around 0, not 1e-17 wide
    unchanged = deltas.assign(delta=0.0, ci_low=0.0, ci_high=0.0, letter_habit_delta=0.0)
    low, high = figures.plot_finetune_gain(unchanged, "choice").axes[0].get_xlim()
    assert low <= -0.05 and high >= 0.05
    assert figures.paper_alias("mistralai/Mistral-7B-Instruct-v0.3") == "mistral"
    assert figures.paper_alias("unsloth/Qwen2.5-7B-Instruct-bnb-4bit") == "qwen"
    assert figures.paper_alias("my-served-model") == "my-served-model"


@needs_emobench
def test_notebook_05_plots_show_every_run_of_the_leaderboard(fixture_tree, tmp_path):
    from ec2er_utils.evaluation import leaderboard_frame

    frame = leaderboard_frame(*(entry.run for entry in figures.load_evaluations(fixture_tree["results"])))
    leaderboard = figures.plot_leaderboard(frame)
    eu, ea = leaderboard.axes[:2]
    runs = {text.get_text() for text in eu.get_legend().get_texts()} - {"chance"}
    assert runs == {f"{label} / choice" for label in set(frame["label"])} and len(runs) == 2
    assert [label.get_text().replace("\n", " ") for label in ea.get_xticklabels()][0] == "Overall"
    against = figures.plot_against_paper(frame)
    sources = [label.get_text() for label in against.axes[1].get_yticklabels()]
    assert sum("(ours, choice)" in source for source in sources) == 2 and "Mistral-7B (fine-tuned)" in sources
    for name, figure in (("table1_choice", leaderboard), ("table1_official", against)):
        assert_images(figures.save_figure(figure, tmp_path, name))
    with pytest.raises(ValueError, match="nothing to plot"):
        figures.plot_leaderboard(frame, language="zh")


def test_the_notebook_parameters_are_checked_by_name():
    from ec2er_utils.parameters import ParameterError

    with pytest.raises(ParameterError, match="'max_runs_per_model'"):
        figures.FiguresConfig.from_parameters({"max_runs_per_model": 0})
    with pytest.raises(ParameterError, match="'language'"):
        figures.FiguresConfig.from_parameters({"language": "de"})
    config = figures.FiguresConfig.from_parameters({"results_dir": "elsewhere", "figure": "not a parameter"})
    assert config.results_dir == Path("elsewhere") and config.figures_dir is None


def test_a_figure_shows_itself_in_a_notebook_without_pyplot():
    figure = figures.plot_pipeline()
    assert figure._repr_png_().startswith(b"\x89PNG")  # what IPython displays for a cell's last value


def test_figures_ignore_the_callers_matplotlib_settings(tmp_path):
    import matplotlib as mpl

    plain = figures.save_figure(figures.plot_table1_paper(), tmp_path / "plain", "table1_paper")
    with mpl.rc_context({"font.size": 20, "axes.facecolor": "red", "savefig.dpi": 30}):
        changed = figures.save_figure(figures.plot_table1_paper(), tmp_path / "changed", "table1_paper")
    assert [p.read_bytes() for p in plain] == [p.read_bytes() for p in changed]
    assert mpl.rcParams["font.size"] != 20  # the caller's settings are restored afterwards


def test_mads_figure_reads_what_the_runner_wrote(fixture_tree):
    records = figures.load_mads_metadata(fixture_tree["data"])
    reasons = {r["stop_reason"] for r in records}
    assert len(records) == 12 and reasons == {"criteria_met", "max_turns", "error"}
    assert all(r["turns"] == 10 for r in records if r["stop_reason"] == "max_turns")
