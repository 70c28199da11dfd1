"""Integration tests of the LLM client with real models: the embedded SmolLM2-135M-Instruct in process (``local``)
and behind a real OpenAI-compatible server, ``transformers serve --continuous-batching`` (``openai``).

All offline and on CPU; the whole module takes about a minute or two on 2 cores.
"""

from __future__ import annotations

import json
import logging
import re
import time
from typing import Literal

import pytest
from pydantic import BaseModel, Field

from ec2er_utils.llm import ChatResult, JSONSchema, LLMInvalidJSONError, LLMRequestError, make_client

pytestmark = pytest.mark.slow

SPECIAL_TOKENS = ("<|im_end|>", "<|im_start|>", "<|endoftext|>")
FAKE_KEY = "sk-ec2er-FAKE-KEY-0123456789"


class MCQAnswer(BaseModel):
    reasoning: str = Field(max_length=120)
    answer: Literal["A", "B", "C", "D"]


QUESTIONS = [
    ("Which of these is a fruit?", ["car", "apple", "rock", "sky"]),
    ("Which animal barks?", ["cat", "fish", "dog", "bird"]),
    ("What colour is clear daytime sky?", ["green", "red", "black", "blue"]),
    ("Which number is even?", ["4", "7", "9", "3"]),
    ("How does someone usually feel after losing a close friend?", ["joyful", "sad", "bored", "hungry"]),
]


def mcq_conversation(question: str, options: list[str]) -> list[dict[str, str]]:
    lettered = " ".join(f"{letter}) {option}" for letter, option in zip("ABCD", options, strict=True))
    return [{"role": "system", "content": "You answer multiple-choice questions. Reply with a JSON object with "
                                          "the keys \"reasoning\" (one short sentence) and \"answer\" (A, B, C "
                                          "or D)."},
            {"role": "user", "content": f"{question} {lettered}"}]


CONVERSATIONS = [mcq_conversation(q, o) for q, o in QUESTIONS]
SHORT = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]
STORY = [{"role": "user", "content": "Tell me a short story about a lighthouse keeper."}]


# --------------------------------------------------------------------------------------------------------------
# local: the embedded model in process


@pytest.fixture(scope="module")
def local_client(embedded_model_path):
    client = make_client("local", temperature=0.7, seed=1234, max_tokens=128, progress=False)
    yield client
    client.close()


def test_local_backend_returns_schema_valid_json(local_client):
    """The issue's acceptance criterion: the local backend returns schema-valid JSON from the embedded model."""
    results = local_client.chat_many(CONVERSATIONS, schema=MCQAnswer)
    assert len(results) == 5
    for result in results:
        assert isinstance(result, ChatResult), f"expected a ChatResult, got {result!r}"
        assert isinstance(result.data, MCQAnswer)
        assert result.data.answer in "ABCD" and len(result.data.reasoning) <= 120
        assert MCQAnswer.model_validate_json(result.text) == result.data  # the text itself is the JSON
        assert result.attempts == 1  # constrained decoding: no re-ask needed
        assert result.finish_reason == "stop"
        assert result.usage.prompt_tokens > 0 and result.usage.completion_tokens > 0


def test_local_backend_dict_schema(local_client):
    schema = {"type": "object", "properties": {"emotion": {"enum": ["joy", "sadness", "anger", "fear"]},
                                               "intensity": {"type": "integer", "minimum": 1, "maximum": 5}},
              "required": ["emotion", "intensity"], "additionalProperties": False}
    result = local_client.chat([{"role": "user", "content": "My dog died today. How do I feel?"}], schema=schema,
                               max_tokens=48)
    assert set(result.data) == {"emotion", "intensity"}
    assert result.data == JSONSchema(schema).validate(result.text)


EMOTION_SCHEMA = {"type": "object", "properties": {"emotion": {"enum": ["joy", "sadness", "anger", "fear"]}},
                  "required": ["emotion"], "additionalProperties": False}


def test_local_backend_mixes_schemas_and_free_text_in_one_call(local_client, monkeypatch):
    """Per-conversation schemas: every constrained row of one generate call follows its own grammar (xgrammar,
    one grammar per row); free-text conversations are generated in a batch of their own."""
    generate_calls = []
    real_generate = local_client.hf_model.generate
    monkeypatch.setattr(local_client.hf_model, "generate",
                        lambda **kwargs: generate_calls.append(len(kwargs["input_ids"])) or real_generate(**kwargs))
    feeling = [{"role": "user", "content": "My dog died today. How do I feel?"}]
    results = local_client.chat_many([CONVERSATIONS[0], feeling, CONVERSATIONS[1], SHORT, feeling],
                                     schemas=[MCQAnswer, EMOTION_SCHEMA, MCQAnswer, None, EMOTION_SCHEMA],
                                     max_tokens=64)
    assert all(isinstance(r, ChatResult) and r.attempts == 1 for r in results), results
    assert isinstance(results[0].data, MCQAnswer) and isinstance(results[2].data, MCQAnswer)
    assert set(results[1].data) == set(results[4].data) == {"emotion"}
    assert results[3].data is None and results[3].text.strip() and not results[3].text.startswith("{")
    assert sorted(generate_calls) == [1, 4]  # the four constrained rows together, the free-text one apart


def test_local_backend_keeps_schema_field_order(local_client):
    result = local_client.chat(CONVERSATIONS[0], schema=MCQAnswer, temperature=0)
    assert result.text.index('"reasoning"') < result.text.index('"answer"')


def test_local_greedy_is_deterministic(local_client):
    first = local_client.chat(STORY, temperature=0, max_tokens=48)
    second = local_client.chat(STORY, temperature=0, max_tokens=48)
    assert first.text and first.text == second.text


def test_local_same_seed_reproduces_sampling(local_client):
    texts = [local_client.chat(STORY, temperature=1.0, seed=seed, max_tokens=32).text for seed in (5, 5, 6)]
    assert texts[0] == texts[1]
    assert texts[0] != texts[2]  # a different seed samples differently (true for this prompt and model)


def test_local_plain_text_reply_is_clean(local_client):
    result = local_client.chat(SHORT, temperature=0, max_tokens=64)
    assert result.text.strip()
    assert not any(token in result.text for token in SPECIAL_TOKENS)
    assert result.finish_reason == "stop"
    assert "paris" in result.text.lower()
    truncated = local_client.chat(STORY, temperature=0, max_tokens=4)
    assert truncated.finish_reason == "length" and truncated.usage.completion_tokens == 4


# --------------------------------------------------------------------------------------------------------------
# openai: a real OpenAI-compatible server (transformers serve --continuous-batching)


def served_client(server, **options):
    defaults = dict(model=server.model, base_url=server.base_url, max_tokens=64, temperature=0.7, seed=7,
                    timeout=120.0, max_retries=1, progress=False)
    defaults.update(options)
    return make_client("openai", **defaults)


def posts_in_log(server) -> int:
    return len(re.findall(r'"POST /v1/chat/completions HTTP/1.1" 200', server.log_path.read_text(errors="replace")))


def test_openai_plain_chat(openai_server):
    client = served_client(openai_server)
    result = client.chat(SHORT)
    assert isinstance(result, ChatResult)
    assert result.text.strip()
    assert not any(token in result.text for token in SPECIAL_TOKENS)
    assert result.finish_reason in ("stop", "length")
    assert result.usage.prompt_tokens > 0 and result.usage.completion_tokens > 0 and result.usage.calls == 1
    assert client.usage.total_tokens == result.usage.total_tokens


def test_openai_server_expects_its_pinned_model_name(openai_server):
    """With a FORCE_MODEL the server accepts exactly that string as ``model`` (here the checkpoint folder)."""
    [result] = served_client(openai_server, model="smollm2", max_retries=0).chat_many([SHORT])
    assert isinstance(result, LLMRequestError) and result.status_code == 400 and result.reason == "request_failed"
    assert served_client(openai_server, max_tokens=4).chat(SHORT).text  # the folder path is accepted


def test_openai_concurrent_requests(openai_server, record_property):
    conversations = [[{"role": "user", "content": f"Name a colour. ({i})"}] for i in range(8)]
    concurrent = served_client(openai_server, concurrency=8, max_tokens=32, temperature=0)
    started = time.perf_counter()
    results = concurrent.chat_many(conversations)
    concurrent_s = time.perf_counter() - started
    assert all(isinstance(r, ChatResult) and r.text.strip() for r in results), results
    assert concurrent.usage.calls == 8

    sequential = served_client(openai_server, concurrency=1, max_tokens=32, temperature=0)
    started = time.perf_counter()
    assert all(isinstance(r, ChatResult) for r in sequential.chat_many(conversations))
    sequential_s = time.perf_counter() - started
    record_property("concurrent_s", round(concurrent_s, 2))
    record_property("sequential_s", round(sequential_s, 2))
    print(f"\n8 requests: concurrency=8 {concurrent_s:.1f}s, concurrency=1 {sequential_s:.1f}s "
          f"(speed-up {sequential_s / concurrent_s:.2f}x)")


def test_openai_schema_is_validated_client_side(openai_server, record_property):
    """transformers serve accepts ``response_format`` but ignores it, so validation and re-asks are the client's.

    Each result must be a schema-valid ChatResult or a typed LLMInvalidJSONError after max_reasks + 1 attempts,
    and the server must have seen exactly one request per attempt.
    """
    max_reasks = 1
    client = served_client(openai_server, max_tokens=96, max_reasks=max_reasks)
    posts_before = posts_in_log(openai_server)
    results = client.chat_many(CONVERSATIONS, schema=MCQAnswer)
    valid = [r for r in results if isinstance(r, ChatResult)]
    invalid = [r for r in results if isinstance(r, LLMInvalidJSONError)]
    assert len(valid) + len(invalid) == len(results), \
        f"unexpected results (an HTTP error would mean response_format was rejected): {results}"
    for result in valid:
        assert isinstance(result.data, MCQAnswer)
        assert JSONSchema(MCQAnswer).validate(result.text) == result.data
        assert 1 <= result.attempts <= max_reasks + 1
    for error in invalid:
        assert error.attempts == max_reasks + 1 and error.reason == "invalid_json"
        assert isinstance(error.raw_text, str) and error.usage.calls == max_reasks + 1
    attempts = sum(r.attempts for r in results)
    assert client.usage.calls == attempts
    time.sleep(0.2)  # let the access log flush
    assert posts_in_log(openai_server) - posts_before == attempts
    reasked = sum(r.attempts > 1 for r in results)
    assert reasked > 0 or len(valid) == len(results)  # the re-ask path ran, or every reply was valid at once
    record_property("schema_valid_first_try", sum(r.attempts == 1 for r in valid))
    record_property("schema_valid_after_reask", sum(r.attempts > 1 for r in valid))
    record_property("schema_invalid", len(invalid))
    ignored = "Ignoring unsupported fields" in openai_server.log_tail(100_000)
    record_property("response_format_ignored_by_server", ignored)
    print(f"\nschema over transformers serve: {len(valid)} valid ({sum(r.attempts == 1 for r in valid)} at the "
          f"first try), {len(invalid)} invalid after {max_reasks + 1} attempts; server ignored response_format: "
          f"{ignored}")


def test_openai_api_key_never_shown(openai_server, caplog, capsys):
    for name in ("", "openai", "httpx", "httpx2", "httpcore"):
        caplog.set_level(logging.DEBUG, logger=name)
    client = served_client(openai_server, api_key=FAKE_KEY, max_tokens=24)
    result = client.chat(SHORT)
    schema_results = client.chat_many(CONVERSATIONS[:1], schema=MCQAnswer)
    bad_model = served_client(openai_server, model="not-the-pinned-model", api_key=FAKE_KEY, max_retries=0)
    [error] = bad_model.chat_many([SHORT])
    assert isinstance(error, LLMRequestError)
    with pytest.raises(LLMRequestError) as raised:
        bad_model.chat(SHORT)
    captured = capsys.readouterr()
    assert caplog.records, "expected DEBUG logging from the HTTP stack"
    haystacks = {
        "logs": caplog.text + "\n".join(json.dumps(r.__dict__, default=repr) for r in caplog.records),
        "stdout": captured.out,
        "stderr": captured.err,
        "results": repr(result) + repr(vars(result)) + repr(schema_results) + repr(error) + str(error),
        "raised": repr(raised.value) + str(raised.value) + raised.getrepr().__str__(),
        "clients": repr(client) + str(client) + repr(vars(client)) + repr(bad_model) + repr(vars(bad_model)),
    }
    for where, text in haystacks.items():
        assert FAKE_KEY not in text, f"API key leaked in {where}"
        assert "FAKE-KEY-0123456789" not in text, f"part of the API key leaked in {where}"
