"""LoRA training (notebook 04): config and planning, the paper's format through the chat template, response-only
masking, a real short training run of the embedded model, adapter save/reload, and the notebook under papermill."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from pydantic import ValidationError

from ec2er_utils import training  # imports Unsloth first, as the notebook does
from ec2er_utils.figures import plot_training_loss
from ec2er_utils.formatting import Question, assistant_response, chat_messages, question_from_ea, questions_from_eu
from ec2er_utils.hub import HubPushError, check_hub_access
from ec2er_utils.models import UnknownModelError, model_folder_name, resolve_model
from ec2er_utils.parameters import ParameterError
from ec2er_utils.schemas import DatasetItem
from ec2er_utils.schemas import EAItem, EUItem

# --------------------------------------------------------------------------------------------------------------
# Hand-made items (short, so that training steps are cheap)

EU_SCENARIO = ("Mia got the job offer she had wanted for years, but taking it means moving across the country, "
               "far from her mother, who has been ill since the spring.")
EMOTIONS = ["Joy & Guilt", "Anger", "Fear", "Pride", "Disgust", "Boredom"]
CAUSES = ["The offer means leaving her ill mother", "She dislikes the new job", "She is bored at home",
          "She lost money"]
EMOTION_EXPLANATION = "She is glad about the job yet feels guilty about leaving her ill mother."
CAUSE_EXPLANATION = "The joy comes from the offer, the guilt from moving away from her mother."
EA_SCENARIO = "Tom's closest friend failed an important exam and sounds upset on the phone."
EA_CHOICES = ["Mock him", "Comfort him and offer to study together", "Ignore him", "Change the subject"]
EA_EXPLANATION = "Comfort and practical help address his distress best."


def eu_item() -> EUItem:
    return EUItem(qid="t-eu", coarse_category="complex_emotions", scenario=EU_SCENARIO, subject="Mia",
                  emotion_choices=EMOTIONS, emotion_label=EMOTIONS[0], cause_choices=CAUSES, cause_label=CAUSES[0])


def ea_item() -> EAItem:
    return EAItem(qid="t-ea", category="Personal-Others", **{"question type": "Response"}, scenario=EA_SCENARIO,
                  subject="Tom", choices=EA_CHOICES, label=EA_CHOICES[1])


def sample_questions() -> list[Question]:
    emotion, cause = questions_from_eu(eu_item(), EMOTION_EXPLANATION, CAUSE_EXPLANATION)
    return [emotion, cause, question_from_ea(ea_item(), EA_EXPLANATION)]


def dataset_items() -> list[DatasetItem]:
    """The same items as notebook 03 writes them (``schemas.DatasetItem``)."""
    eu = DatasetItem(item_id="t-eu", task="EU", category="complex_emotions", source_format="emobench_eu",
                     scenario=EU_SCENARIO, question="What emotion(s) would Mia ultimately feel?", options=EMOTIONS,
                     correct_answer=EMOTIONS[0], explanation=EMOTION_EXPLANATION, subject="Mia",
                     emotion_choices=EMOTIONS, emotion_label=EMOTIONS[0], emotion_explanation=EMOTION_EXPLANATION,
                     cause_choices=CAUSES, cause_label=CAUSES[0], cause_explanation=CAUSE_EXPLANATION)
    ea = DatasetItem(item_id="t-ea", task="EA", category="Personal-Others", source_format="emobench_ea",
                     scenario=EA_SCENARIO, question="What is the most effective response for Tom?",
                     options=EA_CHOICES, correct_answer=EA_CHOICES[1], explanation=EA_EXPLANATION, subject="Tom",
                     question_type="Response", choices=EA_CHOICES, label=EA_CHOICES[1])
    return [eu, ea]


def write_items(path: Path, items: list[DatasetItem]) -> Path:
    path.write_text("".join(item.model_dump_json() + "\n" for item in items), encoding="utf-8")
    return path


CPU = training.DeviceReport("cpu", "test CPU", 32.0, 24.0, True, 2)
A100 = training.DeviceReport("cuda", "NVIDIA A100-SXM4-40GB", 39.6, 39.0, True, 12)


# --------------------------------------------------------------------------------------------------------------
# Configuration and planning (no model)


def test_defaults_follow_the_paper_where_it_speaks_and_say_so_where_it_does_not():
    config = training.TrainConfig()
    assert config.model == "smollm2" and config.learning_rate == 2e-4
    assert config.target_modules == ["q_proj", "k_proj", "v_proj", "o_proj"]  # §5: LoRA in the attention layers
    assert "attention" in training.PAPER_NOTES["target_modules"][0]
    assert training.PAPER_NOTES["lora_r"][0] == "not given"
    assert training.TrainConfig(target_modules="all-linear").target_modules[-3:] == ["gate_proj", "up_proj",
                                                                                    "down_proj"]
    with pytest.raises(ValidationError, match="all-linear"):
        training.TrainConfig(target_modules="everything")
    with pytest.raises(ValidationError, match="lora_rank"):
        training.TrainConfig(lora_rank=8)  # a misspelt setting fails, naming it


def test_the_notebook_parameters_become_the_config_and_a_wrong_one_is_named():
    parameters = {"model": "mistral", "max_steps": "5", "train_file": "items.jsonl", "torch": object()}
    config = training.TrainConfig.from_parameters(parameters)  # other notebook variables are not parameters
    assert (config.model, config.max_steps, config.train_file) == ("mistral", 5, Path("items.jsonl"))
    with pytest.raises(ParameterError, match=r"'max_steps'.*'abc'"):  # papermill -p max_steps abc
        training.TrainConfig.from_parameters({"max_steps": "abc"})
    with pytest.raises(ParameterError, match="'target_modules'"):
        training.TrainConfig.from_parameters({"target_modules": "mlp"})
    with pytest.raises(ParameterError, match="hub_model_id is None"):
        training.TrainConfig.from_parameters({"push_to_hub": True})


@pytest.mark.parametrize("name", ["mistrall", "gpt4", "/no/such/folder/"])
def test_unknown_model_fails_before_anything_loads(name, tmp_path):
    with pytest.raises(UnknownModelError, match="aliases"):
        training.prepare_run(training.TrainConfig(model=name, output_dir=str(tmp_path)), 10, device=CPU)
    assert not any(tmp_path.iterdir())


def test_cpu_plan_is_a_short_demo_and_gpu_plan_the_full_run(tmp_path, monkeypatch):
    config = training.TrainConfig(output_dir=str(tmp_path))
    cpu = training.prepare_run(config, n_train=40, n_eval=30, device=CPU)
    assert (cpu.load_in_4bit, cpu.gradient_accumulation_steps, cpu.max_steps) == (False, 1, training.CPU_DEMO_STEPS)
    assert cpu.max_eval_questions == training.CPU_EVAL_QUESTIONS and cpu.eval_steps == cpu.total_steps
    assert cpu.optim == "adamw_torch" and not cpu.gradient_checkpointing
    assert any("CPU demo" in note for note in cpu.notes)
    assert cpu.run_dir.parent == tmp_path / "smollm2"

    monkeypatch.setenv("EC2ER_DTYPE", "bf16")  # preferred_dtype would ask the (absent) GPU
    gpu = training.prepare_run(training.TrainConfig(model="mistral", output_dir=str(tmp_path)), 40, 30, device=A100)
    assert gpu.load_in_4bit and gpu.base_checkpoint == "unsloth/mistral-7b-instruct-v0.3-bnb-4bit"
    assert (gpu.gradient_accumulation_steps, gpu.effective_batch_size, gpu.max_steps) == (4, 8, -1)
    assert gpu.total_steps == math.ceil(math.ceil(40 / 2) / 4) * 3  # 3 epochs of 5 steps
    assert gpu.max_eval_questions is None and gpu.eval_steps == math.ceil(gpu.total_steps / 4)
    assert gpu.optim == "adamw_8bit" and gpu.gradient_checkpointing
    table = training.config_table(gpu)
    assert table.loc["effective batch size", "value"] == "8"
    assert table.loc["learning_rate", "paper (§5)"] == "not given"

    explicit = training.prepare_run(training.TrainConfig(max_steps=5, gradient_accumulation_steps=2,
                                                         output_dir=str(tmp_path)), 40, device=CPU)
    assert (explicit.max_steps, explicit.gradient_accumulation_steps, explicit.eval_steps) == (5, 2, None)
    with pytest.raises(ValueError, match="max_steps"):
        training.prepare_run(training.TrainConfig(max_steps=0, output_dir=str(tmp_path)), 40, device=CPU)


def test_refuses_early_when_the_model_cannot_fit(tmp_path, monkeypatch):
    monkeypatch.setenv("EC2ER_DTYPE", "bf16")
    t4 = training.DeviceReport("cuda", "Tesla T4", 15.0, 14.5, True, 4)
    with pytest.raises(training.ModelTooLargeError, match=r"needs about 17\.8 GB of GPU memory.*14\.5 GB is free"):
        training.prepare_run(training.TrainConfig(model="mistral", load_in_4bit=False, output_dir=str(tmp_path)),
                             10, device=t4)
    fits = training.prepare_run(training.TrainConfig(model="mistral", output_dir=str(tmp_path)), 10, device=t4)
    assert fits.load_in_4bit and "needs about 6.4 GB" in fits.notes[0]  # 4-bit QLoRA fits a T4
    tiny_cpu = training.DeviceReport("cpu", "tiny", 4.0, 3.0, True, 2)
    with pytest.raises(training.ModelTooLargeError, match="RAM.*use a GPU"):
        training.prepare_run(training.TrainConfig(model="llama", output_dir=str(tmp_path)), 10, device=tiny_cpu)
    assert training.check_fits(training.TrainConfig(), tiny_cpu).fits  # the embedded model fits anywhere
    with pytest.raises(training.ModelTooLargeError, match="No GPU found.*Change runtime type"):
        training.prepare_run(training.TrainConfig(model="mistral", output_dir=str(tmp_path)), 10, device=CPU)
    monkeypatch.setenv("EC2ER_ALLOW_CPU_TRAINING", "1")
    assert training.check_fits(training.TrainConfig(model="mistral"), CPU).fits  # 17.8 GB of 24 GB free


def test_local_checkpoint_size_is_counted_from_safetensors(embedded_model_path):
    spec = resolve_model(str(embedded_model_path))
    assert spec.params_billion is None
    assert 0.13 < training.parameter_count_billion(spec) < 0.14


def test_training_records_are_prompt_completion_conversations():
    records = training.training_records(sample_questions())
    assert [len(r["prompt"]) for r in records] == [1, 1, 1]
    assert records[0]["prompt"][0]["role"] == "user" and "<scenario>" in records[0]["prompt"][0]["content"]
    assert records[2]["completion"] == [{"role": "assistant", "content": assistant_response(sample_questions()[2])}]
    unexplained = Question("s", "q?", ("a", "b"), 0, None, "EA")
    with pytest.raises(ValueError, match="training question 1 .*explanation"):
        training.training_records([sample_questions()[0], unexplained])


def test_questions_come_from_the_processed_split_or_any_item_file(tmp_path, monkeypatch):
    monkeypatch.setenv("EC2ER_DATA_DIR", str(tmp_path / "data"))
    with pytest.raises(FileNotFoundError, match="03_preprocess"):
        training.load_questions("train")
    processed = tmp_path / "data" / "processed"
    processed.mkdir(parents=True)
    write_items(processed / "train.jsonl", dataset_items())
    questions = training.load_questions("train")
    assert [q.kind for q in questions] == ["EU-emotion", "EU-cause", "EA"]
    assert questions == sample_questions()  # same questions as the evaluation's paper protocol asks
    assert training.load_eval_questions()[0] == []  # no validation split written
    write_items(processed / "validation.jsonl", dataset_items()[1:])
    evaluation, source = training.load_eval_questions()
    assert len(evaluation) == 1 and source.endswith("validation.jsonl")

    item_file = write_items(tmp_path / "mine.jsonl", dataset_items()[:1])
    assert len(training.load_questions(file=item_file)) == 2
    assert training.load_eval_questions(train_file=item_file) == ([], "none (train_file given without eval_file)")
    with pytest.raises(FileNotFoundError, match="train_file"):
        training.load_questions(file=tmp_path / "missing.jsonl")


def test_no_questions_is_an_error_and_few_questions_are_said_to_be_few():
    with pytest.raises(training.NoTrainingDataError, match="notebooks/03_preprocess.ipynb"):
        training.require_questions([], "data/processed/train.jsonl")
    assert "proves the training machinery" in training.require_questions(sample_questions(), "x")
    assert training.require_questions(sample_questions() * 3, "x") == "9 training questions from x"


def test_run_folders_are_named_by_model_and_never_overwritten(tmp_path):
    assert model_folder_name(resolve_model("Qwen/Qwen2.5-7B-Instruct")) == \
        "Qwen--Qwen2.5-7B-Instruct"
    config = training.TrainConfig(output_dir=str(tmp_path), run_id="demo")
    first = training.new_run_dir(config)
    first.mkdir(parents=True)
    assert training.new_run_dir(config) == tmp_path / "smollm2" / "demo-2"


def test_loss_history_and_plot(tmp_path):
    log = [{"eval_loss": 2.0, "step": 0, "epoch": 0}, {"loss": 1.9, "learning_rate": 2e-4, "step": 1, "epoch": 0.5},
           {"loss": 1.2, "learning_rate": 1e-4, "step": 2, "epoch": 1.0}, {"eval_loss": 1.5, "step": 2, "epoch": 1.0},
           {"train_runtime": 3.0, "step": 2}]
    history = training.loss_history(log)
    assert [p["loss"] for p in history["train"]] == [1.9, 1.2]
    assert [p["eval_loss"] for p in history["eval"]] == [2.0, 1.5]
    figure = plot_training_loss({"smollm2": {"20250101-000000": history}}, title="one run")  # save_run's loss.png
    (axes,) = figure.axes
    assert [list(line.get_ydata()) for line in axes.lines] == [[1.9, 1.2], [2.0, 1.5]]  # train, then validation
    assert [list(line.get_xdata()) for line in axes.lines] == [[1, 2], [0, 2]]


# --------------------------------------------------------------------------------------------------------------
# The paper's format through a real chat template (tokenizer only)


@pytest.fixture(scope="module")
def smollm2_tokenizer(embedded_model_path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(embedded_model_path)


def test_eu_and_ea_questions_through_the_chat_template(smollm2_tokenizer):
    emotion, cause, ea = sample_questions()
    rendered = training.render_example(emotion, smollm2_tokenizer)
    assert rendered["prompt"].endswith("<|im_start|>assistant\n")
    assert f"<|im_start|>user\n<scenario>\n{EU_SCENARIO}\n</scenario>\n\n<question>\nWhat emotion(s) would Mia " \
           "ultimately feel in this situation?\n</question>" in rendered["prompt"]
    assert "F) Boredom\n</options>" in rendered["prompt"] and '"answer": "A/B/C/D/E/F"' in rendered["prompt"]
    assert rendered["response"] == assistant_response(emotion) + "<|im_end|>\n"
    assert json.loads(assistant_response(emotion)) == {"reasoning": EMOTION_EXPLANATION, "answer": "A"}
    assert "Why would Mia feel this way" in training.render_example(cause, smollm2_tokenizer)["prompt"]

    rendered = training.render_example(ea, smollm2_tokenizer)
    assert "what is the most effective response for Tom?" in rendered["prompt"]
    assert "D) Change the subject\n</options>" in rendered["prompt"] and '"answer": "A/B/C/D"' in rendered["prompt"]
    assert rendered["response"] == assistant_response(ea) + "<|im_end|>\n"
    assert json.loads(assistant_response(ea))["answer"] == "B"

    stats = training.token_statistics(sample_questions(), smollm2_tokenizer, max_seq_length=4096)
    assert stats["examples"] == 3 and 0 < stats["response_tokens"] < stats["tokens"]
    assert stats["over_max_seq_length"] == 0
    assert training.token_statistics(sample_questions(), smollm2_tokenizer, 64)["over_max_seq_length"] == 3


def test_a_tokenizer_without_chat_template_gets_unsloths_alpaca(embedded_model_path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(embedded_model_path)
    tokenizer.chat_template = None  # as the llama base model's tokenizer
    assert training.ensure_chat_template(tokenizer) == "alpaca"
    assert training.ensure_chat_template(tokenizer) is None  # already has one now
    ea = sample_questions()[2]
    rendered = training.render_example(ea, tokenizer)
    assert rendered["prompt"].endswith("### Instruction:\n" + chat_messages(ea, with_answer=False)[0]
                                       ["content"] + "\n\n### Response:\n")
    assert rendered["response"] == assistant_response(ea) + tokenizer.eos_token + "\n\n"


# --------------------------------------------------------------------------------------------------------------
# A real run of the embedded model (slow)

TRAIN_STEPS = 10


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Train the embedded model for a few steps on the hand-made questions (repeated), then save the run.

    The learning rate (1e-3) and LoRA on every linear layer are for the test only: they make the loss fall clearly
    within a few steps, which proves gradients reach the adapter. The validation questions are the training ones.
    """
    questions = sample_questions()
    config = training.TrainConfig(max_steps=TRAIN_STEPS, learning_rate=1e-3, lora_r=8, lora_alpha=16,
                                  target_modules="all-linear", gradient_accumulation_steps=1, warmup_ratio=0.0,
                                  logging_steps=1, output_dir=str(tmp_path_factory.mktemp("runs")), run_id="test")
    plan = training.prepare_run(config, n_train=len(questions) * 4, n_eval=len(questions))
    model, tokenizer, backend = training.load_model_for_training(plan)
    trainer = training.build_trainer(model, tokenizer, plan, questions * 4, questions)
    prepared = [trainer.train_dataset[i] for i in range(len(questions))]
    result = training.run_training(trainer, plan, len(questions) * 4)
    run_dir = training.save_run(model, tokenizer, plan, result, backend=backend,
                                data={"train_questions": len(questions) * 4, "train_source": "test items"})
    return dict(model=model, tokenizer=tokenizer, backend=backend, plan=plan, prepared=prepared, result=result,
                run_dir=run_dir, questions=questions)


@pytest.mark.slow
def test_unsloth_cpu_path_is_the_one_that_ran(trained):
    assert trained["backend"] == "unsloth-cpu"
    trainable, total = training.trainable_parameters(trained["model"])
    assert 0 < trainable < 0.05 * total


@pytest.mark.slow
def test_prompt_tokens_are_labelled_minus_100_and_only_the_response_is_trained(trained):
    tokenizer = trained["tokenizer"]
    for question, example in zip(trained["questions"], trained["prepared"], strict=True):
        rendered = training.render_example(question, tokenizer)
        prompt_ids = tokenizer(rendered["prompt"], add_special_tokens=False)["input_ids"]
        labels = example["labels"]
        assert example["input_ids"][:len(prompt_ids)] == prompt_ids
        assert labels[:len(prompt_ids)] == [-100] * len(prompt_ids)
        assert -100 not in labels[len(prompt_ids):]
        summary = training.masking_summary(example, tokenizer)
        assert summary["trained_text"] == rendered["response"]
        assert summary["masked_prompt_tokens"] == len(prompt_ids)


@pytest.mark.slow
def test_a_short_real_run_lowers_the_training_loss(trained):
    result = trained["result"]
    losses = [point["loss"] for point in result.history["train"]]
    assert result.global_step == TRAIN_STEPS and len(losses) == TRAIN_STEPS
    assert sum(losses[-3:]) / 3 < 0.8 * sum(losses[:3]) / 3, losses
    assert result.eval_loss_end < result.eval_loss_start
    assert [p["step"] for p in result.history["eval"]] == [0, TRAIN_STEPS]  # CPU: before and after training
    assert result.tokens_seen > 0 and result.tokens_per_second > 0 and result.samples_per_second > 0
    assert result.peak_memory_gb > 0.2 and result.peak_memory_kind == "peak RSS of this process"


@pytest.mark.slow
def test_run_folder_holds_everything(trained):
    run_dir = trained["run_dir"]
    for name in ("adapter/adapter_config.json", "adapter/adapter_model.safetensors", "adapter/tokenizer.json",
                 "config.json", "loss_history.json", "loss.png", "metrics.json", "README.md"):
        assert (run_dir / name).is_file(), name
    config = json.loads((run_dir / "config.json").read_text())
    assert config["config"]["model"] == "smollm2" and config["backend"] == "unsloth-cpu"
    assert config["effective_batch_size"] == 2 and config["versions"]["unsloth"]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["global_step"] == TRAIN_STEPS and metrics["tokens_per_second"] > 0
    history = json.loads((run_dir / "loss_history.json").read_text())
    assert len(history["train"]) == TRAIN_STEPS
    card = (run_dir / "README.md").read_text()
    assert "base_model: HuggingFaceTB/SmolLM2-135M-Instruct" in card and "| learning_rate | 0.001 |" in card
    assert "Not measured yet" in card
    assert "| EU overall | 0.2500 |" in training.model_card(run_dir, {"EU overall": 0.25})


def _logits(model, tokenizer, text):
    import torch

    inputs = tokenizer([text], return_tensors="pt", add_special_tokens=False).to(model.device)
    with torch.no_grad():
        return model(**inputs).logits


@pytest.mark.slow
def test_saved_adapter_reloads_with_identical_logits(trained):
    from ec2er_utils.llm import make_client

    model, tokenizer = trained["model"], trained["tokenizer"]
    model.eval()
    text = training.render_example(trained["questions"][0], tokenizer)["prompt"]
    expected = _logits(model, tokenizer, text)
    reloaded, reloaded_tokenizer = training.load_adapter(trained["run_dir"])
    assert reloaded_tokenizer.padding_side == "left"
    assert (reloaded.dtype, reloaded_tokenizer.chat_template) == (model.dtype, tokenizer.chat_template)
    import torch

    assert torch.equal(_logits(reloaded, reloaded_tokenizer, text), expected)
    # the evaluation's path: the local LLM client with adapter=<run>/adapter
    client = make_client("local", model="smollm2", adapter=str(trained["run_dir"] / "adapter"), progress=False)
    assert torch.equal(_logits(client.hf_model, client.tokenizer, text), expected)
    with pytest.raises(FileNotFoundError, match="no LoRA adapter"):
        training.load_adapter(trained["run_dir"] / "checkpoints-missing")


# --------------------------------------------------------------------------------------------------------------
# The notebook under papermill (slow)


@pytest.mark.slow
def test_notebook_runs_with_papermill_overrides(tmp_path, embedded_model_path, monkeypatch):
    import nbformat
    import papermill

    from ec2er_utils.paths import REPO_ROOT

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    train_file = write_items(tmp_path / "train.jsonl", dataset_items())
    eval_file = write_items(tmp_path / "validation.jsonl", dataset_items()[1:])
    runs = tmp_path / "runs"
    # ``model`` overridden with the embedded checkpoint's folder: a different value that still runs offline
    papermill.execute_notebook(
        str(REPO_ROOT / "notebooks" / "04_train.ipynb"), str(tmp_path / "out.ipynb"), kernel_name="python3",
        cwd=str(REPO_ROOT / "notebooks"), progress_bar=False,
        parameters={"model": str(embedded_model_path), "max_steps": 2, "train_file": str(train_file),
                    "eval_file": str(eval_file), "output_dir": str(runs), "run_id": "papermill"})
    run_dir = runs / embedded_model_path.name / "papermill"
    config = json.loads((run_dir / "config.json").read_text())
    assert config["config"]["model"] == str(embedded_model_path) and config["max_steps"] == 2
    assert config["data"]["train_questions"] == 3 and config["data"]["eval_questions"] == 1
    assert json.loads((run_dir / "metrics.json").read_text())["global_step"] == 2
    executed = nbformat.read(str(tmp_path / "out.ipynb"), as_version=4)
    outputs = "".join(o.get("text", "") for c in executed.cells for o in c.get("outputs", []))
    assert "reloaded adapter gives identical logits: True" in outputs
    assert "Only 3 training question(s)" in outputs


# --------------------------------------------------------------------------------------------------------------
# Resume, no silent fallback, the Hub round trip (a local stand-in for the Hub API: no network here)


class StandInHub:
    """Records what ``huggingface_hub.HfApi`` is asked; ``fail`` makes the upload raise, ``account`` is the
    token's owner (None: the Hub rejects the token)."""

    calls: list = []

    def __init__(self, token=None, *, fail: bool = False, account: str | None = "ada"):
        self.token, self.fail, self.account = token, fail, account

    def whoami(self):
        if self.account is None:
            raise RuntimeError("401 Client Error: Invalid user token")
        return {"name": self.account}

    def create_repo(self, repo_id, **options):
        StandInHub.calls.append(("create_repo", repo_id, options))
        return f"https://huggingface.co/{repo_id}"

    def upload_folder(self, **options):
        if self.fail:
            raise ConnectionError("the Hub is unreachable")
        StandInHub.calls.append(("upload_folder", options["repo_id"], sorted(p.name for p in
                                                                           Path(options["folder_path"]).iterdir())))


def test_hub_target_is_checked_before_training(monkeypatch):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "HfApi", lambda token=None: StandInHub(token))
    assert check_hub_access("ada/ec2er-lora") == "ada"
    with pytest.raises(ValueError, match="needs its owner"):
        check_hub_access("ec2er-lora")
    with pytest.raises(ValueError, match="not a valid repository id"):
        check_hub_access("ada/bad name!")
    monkeypatch.setattr(huggingface_hub, "HfApi", lambda token=None: StandInHub(token, account=None))
    with pytest.raises(PermissionError, match="Set HF_TOKEN .*push later"):
        check_hub_access("ada/ec2er-lora")


@pytest.mark.slow
def test_model_card_has_a_valid_header_and_the_peft_snippet(trained):
    from huggingface_hub import ModelCard

    card = ModelCard(training.model_card(trained["run_dir"], dataset_ids=["ada/ec2er-items"]))
    assert card.data.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct" and card.data.library_name == "peft"
    assert card.data.datasets == ["ada/ec2er-items"]
    assert "AutoPeftModelForCausalLM.from_pretrained" in card.text


@pytest.mark.slow
def test_push_sends_the_adapter_and_card_and_a_failed_push_says_the_run_is_safe(trained, monkeypatch):
    import huggingface_hub

    StandInHub.calls = []
    monkeypatch.setattr(huggingface_hub, "HfApi", lambda token=None: StandInHub(token))
    url = training.push_to_hub(trained["run_dir"], "ada/ec2er-lora", private=True)
    assert url == "https://huggingface.co/ada/ec2er-lora"
    (create, upload) = StandInHub.calls
    assert create == ("create_repo", "ada/ec2er-lora", {"private": True, "exist_ok": True, "repo_type": "model"})
    assert {"adapter_config.json", "adapter_model.safetensors", "README.md", "training_config.json"} <= set(upload[2])
    assert not (trained["run_dir"] / ".hub_upload").exists()
    monkeypatch.setattr(huggingface_hub, "HfApi", lambda token=None: StandInHub(token, fail=True))
    with pytest.raises(HubPushError, match=r"files are safe on disk .*push_to_hub\("):
        training.push_to_hub(trained["run_dir"], "ada/ec2er-lora")
    assert (trained["run_dir"] / "adapter" / "adapter_model.safetensors").is_file()


@pytest.mark.slow
def test_a_hub_adapter_id_loads_like_a_run_folder(trained, monkeypatch):
    import huggingface_hub

    adapter = trained["run_dir"] / "adapter"
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda repo_id, repo_type: str(adapter))
    model, _ = training.load_adapter("ada/ec2er-lora")
    assert type(model).__name__.startswith("PeftModel")
    from ec2er_utils.hub import download_adapter

    with pytest.raises(FileNotFoundError, match="neither a local adapter"):
        download_adapter("not-a-repo")


@pytest.mark.slow
def test_a_disconnected_run_resumes_from_its_last_checkpoint(tmp_path, capsys):
    questions = sample_questions()
    settings = dict(learning_rate=1e-3, gradient_accumulation_steps=1, logging_steps=1, save_steps=1,
                    output_dir=str(tmp_path), run_id="colab-1", max_eval_questions=0)

    def train(**changes):
        config = training.TrainConfig(**settings, **changes)
        plan = training.prepare_run(config, n_train=len(questions))
        model, tokenizer, _ = training.load_model_for_training(plan)
        return plan, training.run_training(training.build_trainer(model, tokenizer, plan, questions), plan,
                                           len(questions))

    first, _ = train(max_steps=2)
    assert (first.run_dir / "checkpoints" / "checkpoint-2").is_dir()
    again, result = train(max_steps=3, resume=True)
    assert again.run_dir == first.run_dir and result.global_step == 3
    printed = capsys.readouterr().out
    assert "resume: continuing from" in printed and "checkpoint-2" in printed
    assert "[train] step 3/3 (100%) loss" in printed  # plain progress lines, visible under papermill


@pytest.mark.slow
def test_out_of_memory_is_raised_with_advice_and_only_a_missing_unsloth_falls_back(tmp_path, monkeypatch, capsys):
    import torch
    import unsloth

    config = training.TrainConfig(output_dir=str(tmp_path), run_id="fallback")
    plan = training.prepare_run(config, n_train=4)

    def out_of_memory(**options):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(unsloth.FastLanguageModel, "from_pretrained", out_of_memory)
    with pytest.raises(RuntimeError, match="per_device_train_batch_size or max_seq_length"):
        training.load_model_for_training(plan)

    def unsupported(**options):
        raise NotImplementedError("Unsloth: this platform is not supported")

    monkeypatch.setattr(unsloth.FastLanguageModel, "from_pretrained", unsupported)
    _, _, backend = training.load_model_for_training(plan)
    assert backend.startswith("transformers+peft (fallback: NotImplementedError")
    assert "UNSLOTH NOT USED" in capsys.readouterr().out


@pytest.mark.slow
def test_a_merged_16bit_copy_is_a_plain_checkpoint_with_the_adapters_logits(trained):
    import torch
    from transformers import AutoModelForCausalLM

    folder = training.save_merged_16bit(trained["run_dir"])
    assert (folder / "config.json").is_file() and not (folder / "adapter_config.json").exists()
    merged = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.bfloat16)
    adapted, tokenizer = training.load_adapter(trained["run_dir"], dtype=torch.bfloat16)
    inputs = tokenizer(["Mia smiles after losing the match."], return_tensors="pt")
    with torch.no_grad():
        ours, reference = merged(**inputs).logits.float(), adapted(**inputs).logits.float()
    # the same function up to bf16 rounding of the merged weights: logits within 5%, the same next token almost
    # everywhere (a near-tie may flip under rounding)
    assert (ours - reference).abs().max().item() < 0.05 * reference.abs().max().item()
    assert (ours.argmax(-1) == reference.argmax(-1)).float().mean().item() >= 0.75
