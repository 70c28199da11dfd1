"""Unit tests of the LLM client interface (ec2er_utils.llm): fast, no model.

The shared logic (schemas, re-asks, usage, typed errors, sync wrappers) is driven through ``ScriptedClient``; the
``openai`` backend's protocol handling (retries, error messages, API-key secrecy, reasoning fields) through a tiny
canned HTTP server on loopback. Real models and a real server are exercised in test_llm_integration.py.
"""

from __future__ import annotations

import asyncio
import json
import threading
import traceback
from http.server import BaseHTTPRequestHandler
from typing import Literal

import pytest
from pydantic import BaseModel, Field

from ec2er_utils.llm import (
    BACKENDS,
    ChatResult,
    Completion,
    JSONSchema,
    LLMError,
    LLMFatalError,
    LLMInvalidJSONError,
    LLMRequestError,
    SchemaViolation,
    Usage,
    extract_json_text,
    make_client,
    run_sync,
)
from ec2er_utils.llm.openai_backend import OpenAIClient
from tests.helpers import LoopbackHTTPServer, ScriptedClient, free_loopback_port

SECRET = "sk-test-SECRET123"
USER = [{"role": "user", "content": "Which option? A, B, C or D."}]


class Answer(BaseModel):
    reasoning: str = Field(max_length=50)
    answer: Literal["A", "B", "C", "D"]


DICT_SCHEMA = {
    "title": "Answer dict",
    "type": "object",
    "properties": {"reasoning": {"type": "string"}, "answer": {"enum": ["A", "B", "C", "D"]}},
    "required": ["reasoning", "answer"],
    "additionalProperties": False,
}

VALID = '{"reasoning": "because", "answer": "B"}'


# --------------------------------------------------------------------------------------------------------------
# JSONSchema


@pytest.mark.parametrize("schema", [Answer, DICT_SCHEMA], ids=["pydantic", "dict"])
class TestJSONSchema:
    def test_valid(self, schema):
        data = JSONSchema(schema).validate(VALID)
        if schema is Answer:
            assert isinstance(data, Answer) and data.answer == "B" and data.reasoning == "because"
        else:
            assert data == {"reasoning": "because", "answer": "B"}

    @pytest.mark.parametrize("text", ["", "not json at all", '{"reasoning": "because", "answer": "B"',
                                      "{'reasoning': 'because', 'answer': 'B'}"])
    def test_invalid_json(self, schema, text):
        with pytest.raises(SchemaViolation, match="not valid JSON"):
            JSONSchema(schema).validate(text)

    @pytest.mark.parametrize("text, field", [
        ('{"reasoning": 3, "answer": "B"}', "reasoning"),  # wrong type
        ('{"reasoning": "x", "answer": "E"}', "answer"),  # not one of the allowed values
        ('{"answer": "B"}', "reasoning"),  # missing
    ])
    def test_wrong_shape(self, schema, text, field):
        with pytest.raises(SchemaViolation, match="does not match the schema") as info:
            JSONSchema(schema).validate(text)
        assert field in str(info.value) or "required" in str(info.value)

    def test_wrong_top_level_type(self, schema):
        with pytest.raises(SchemaViolation, match="does not match the schema"):
            JSONSchema(schema).validate('["reasoning", "answer"]')

    @pytest.mark.parametrize("text", [
        f"```json\n{VALID}\n```",
        f"```\n{VALID}\n```",
        f"Here is my answer:\n```json\n{VALID}\n```\nHope this helps.",
        f"Sure! {VALID}",
        f"  \n{VALID}\n  ",
    ])
    def test_fenced_or_wrapped_json_accepted(self, schema, text):
        data = JSONSchema(schema).validate(text)
        answer = data.answer if schema is Answer else data["answer"]
        assert answer == "B"

    def test_response_format(self, schema):
        spec = JSONSchema(schema)
        fmt = spec.response_format()
        assert fmt["type"] == "json_schema"
        assert fmt["json_schema"]["schema"] == spec.json_schema
        assert fmt["json_schema"]["name"] == ("Answer" if schema is Answer else "Answer_dict")  # sanitised


def test_pydantic_max_length_enforced():
    with pytest.raises(SchemaViolation, match="reasoning"):
        JSONSchema(Answer).validate(json.dumps({"reasoning": "x" * 51, "answer": "A"}))


def test_invalid_dict_schema_and_wrong_type_rejected():
    import jsonschema

    with pytest.raises(jsonschema.SchemaError):
        JSONSchema({"type": "no-such-type"})
    with pytest.raises(TypeError, match="pydantic model class or a JSON-schema dict"):
        JSONSchema("not a schema")  # type: ignore[arg-type]


def test_extract_json_text():
    assert extract_json_text(f"```json\n{VALID}\n```") == VALID
    assert extract_json_text(f"blah {VALID} blah") == VALID
    assert extract_json_text("[1, 2]") == "[1, 2]"
    assert extract_json_text("no json") == "no json"


def test_trailing_chatter_after_json_accepted():
    assert JSONSchema(Answer).validate(f"{VALID} Hope this helps!").answer == "B"


def test_uppercase_json_fence_accepted():
    assert JSONSchema(Answer).validate(f"```JSON\n{VALID}\n```").answer == "B"


# --------------------------------------------------------------------------------------------------------------
# Plain chat, re-asks, usage


def test_plain_chat_passes_options_and_counts_usage():
    client = ScriptedClient([["hello"]], temperature=0.3, max_tokens=77, seed=5)
    result = client.chat(USER)
    assert isinstance(result, ChatResult)
    assert (result.text, result.data, result.attempts, result.finish_reason) == ("hello", None, 1, "stop")
    assert result.usage.as_dict() == {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15, "calls": 1}
    call = client.calls[0]
    assert (call["temperature"], call["max_tokens"], call["seed"], call["schema"]) == (0.3, 77, 5, None)
    assert call["conversations"] == [USER]


def test_per_call_overrides():
    client = ScriptedClient([["x"]], temperature=0.7, max_tokens=64, seed=1)
    client.chat(USER, temperature=0, max_tokens=8, seed=42)
    call = client.calls[0]
    assert (call["temperature"], call["max_tokens"], call["seed"]) == (0, 8, 42)


def test_reask_then_valid():
    client = ScriptedClient([['{"reasoning": "x", "answer": "Z"}'], [VALID]], seed=7)
    result = client.chat(USER, schema=Answer)
    assert isinstance(result, ChatResult)
    assert result.attempts == 2
    assert isinstance(result.data, Answer) and result.data.answer == "B"
    assert result.text == VALID
    # The second conversation: the original, the bad assistant reply, then a user re-ask naming the problem.
    (second,) = client.conversations[1]
    assert second[:len(USER)] == USER
    assert second[len(USER)] == {"role": "assistant", "content": '{"reasoning": "x", "answer": "Z"}'}
    reask = second[len(USER) + 1]
    assert reask["role"] == "user"
    assert "does not match the schema" in reask["content"] and "answer" in reask["content"]
    assert json.dumps(JSONSchema(Answer).json_schema) in reask["content"]
    assert len(second) == len(USER) + 2
    # A re-ask with the same seed could repeat the mistake, so the seed moves on.
    assert [c["seed"] for c in client.calls] == [7, 8]
    # Usage covers both attempts.
    assert result.usage.as_dict() == {"prompt_tokens": 20, "completion_tokens": 10, "total_tokens": 30, "calls": 2}


def test_reask_names_invalid_json_problem():
    client = ScriptedClient([["I think it is B"], [VALID]])
    assert client.chat(USER, schema=DICT_SCHEMA).data == {"reasoning": "because", "answer": "B"}
    reask = client.conversations[1][0][-1]
    assert reask["role"] == "user" and "not valid JSON" in reask["content"]


def test_always_invalid_raises_after_max_reasks_plus_one():
    replies = ["nope 1", '{"answer": "B"}', "nope 3"]
    client = ScriptedClient([[r] for r in replies], max_reasks=2)
    with pytest.raises(LLMInvalidJSONError) as info:
        client.chat(USER, schema=Answer)
    err = info.value
    assert err.attempts == 3 and len(client.calls) == 3
    assert err.raw_text == "nope 3"
    assert err.reason == "invalid_json" and isinstance(err, LLMError)
    assert "3 attempt" in str(err) and "not valid JSON" in str(err)
    assert err.usage.calls == 3 and err.usage.completion_tokens == 15
    # Each re-ask extends the same conversation.
    assert [len(c[0]) for c in client.conversations] == [1, 3, 5]


def test_max_reasks_zero():
    client = ScriptedClient([["nope"]], max_reasks=0)
    [result] = client.chat_many([USER], schema=Answer)
    assert isinstance(result, LLMInvalidJSONError)
    assert result.attempts == 1 and result.raw_text == "nope" and len(client.calls) == 1
    client = ScriptedClient([[VALID]], max_reasks=0)
    assert client.chat(USER, schema=Answer).attempts == 1


def test_reasks_are_batched_and_results_keep_order():
    conversations = [[{"role": "user", "content": f"q{i}"}] for i in range(4)]
    script = [
        [VALID, "bad", VALID, "bad"],
        ["still bad", VALID],  # only the two invalid ones are re-asked, together
        ["bad again"],
    ]
    client = ScriptedClient(script, max_reasks=2)
    results = client.chat_many(conversations, schema=Answer)
    assert [type(r).__name__ for r in results] == ["ChatResult", "LLMInvalidJSONError", "ChatResult", "ChatResult"]
    assert [r.attempts for r in results] == [1, 3, 1, 2]
    assert [len(call["conversations"]) for call in client.calls] == [4, 2, 1]
    assert client.conversations[1][0][0]["content"] == "q1" and client.conversations[1][1][0]["content"] == "q3"
    assert client.conversations[2][0][0]["content"] == "q1"


def test_per_conversation_schemas_validate_and_reask_each_against_its_own():
    conversations = [[{"role": "user", "content": f"q{i}"}] for i in range(3)]
    long_reasoning = json.dumps({"reasoning": "x" * 60, "answer": "B"})  # too long for Answer, fine for DICT_SCHEMA
    client = ScriptedClient([[long_reasoning, long_reasoning, "free text"], [VALID]], max_reasks=1)
    results = client.chat_many(conversations, schemas=[Answer, DICT_SCHEMA, None])
    assert [type(r).__name__ for r in results] == ["ChatResult", "ChatResult", "ChatResult"]
    assert isinstance(results[0].data, Answer) and results[0].attempts == 2  # re-asked against Answer
    assert results[1].data == json.loads(long_reasoning) and results[1].attempts == 1
    assert results[2].data is None and results[2].text == "free text"
    first, reask = client.calls
    assert [s.name if s else None for s in first["schemas"]] == ["Answer", "Answer_dict", None]
    assert first["schema"] is None  # not one schema for all
    assert [s.name for s in reask["schemas"]] == ["Answer"] and len(reask["conversations"]) == 1
    assert json.dumps(JSONSchema(Answer).json_schema) in reask["conversations"][0][-1]["content"]


def test_equal_schema_objects_are_wrapped_once_and_shared():
    client = ScriptedClient([[VALID, VALID]])
    client.chat_many([USER, USER], schemas=[Answer, Answer])
    first, second = client.calls[0]["schemas"]
    assert first is second and client.calls[0]["schema"] is first


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(schema=Answer, schemas=[Answer]), ValueError, "either schema= .* or schemas="),
    (dict(schemas=[Answer, Answer]), ValueError, "2 entries for 1 conversation"),
    (dict(schemas=DICT_SCHEMA), TypeError, "one schema .* per conversation"),
])
def test_bad_per_conversation_schemas(kwargs, error, match):
    with pytest.raises(error, match=match):
        ScriptedClient([[VALID]]).chat_many([USER], **kwargs)


def test_usage_summed_per_result_and_on_client():
    client = ScriptedClient([
        [Completion("a", prompt_tokens=3, completion_tokens=4), Completion("b", prompt_tokens=5, completion_tokens=6)],
        [Completion(VALID, prompt_tokens=100, completion_tokens=1)],
        [Completion("c", prompt_tokens=1, completion_tokens=1)],
    ])
    first = client.chat_many([USER, USER])
    assert [r.usage.as_dict() for r in first] == [
        {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7, "calls": 1},
        {"prompt_tokens": 5, "completion_tokens": 6, "total_tokens": 11, "calls": 1}]
    client.chat(USER, schema=Answer)
    client.chat(USER)
    assert client.usage.as_dict() == {"prompt_tokens": 109, "completion_tokens": 12, "total_tokens": 121,
                                      "calls": 4}


def test_usage_add():
    usage = Usage()
    usage.add(2, 3)
    usage.add(1, 1, calls=2)
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens, usage.calls) == (3, 4, 7, 3)


def test_request_errors_returned_in_place_and_raised_by_chat():
    failure = LLMRequestError("HTTP 503 from somewhere", status_code=503)
    client = ScriptedClient([[failure, VALID], [failure]])
    results = client.chat_many([USER, USER], schema=Answer)
    assert results[0] is failure and isinstance(results[1], ChatResult)
    assert results[0].reason == "request_failed" and results[0].status_code == 503
    with pytest.raises(LLMRequestError, match="503"):
        client.chat(USER)
    # A request error is not re-asked and counts no tokens.
    assert len(client.calls) == 2 and client.usage.calls == 1


def test_a_fatal_error_is_raised_not_returned_in_place():
    """One conversation's configuration error stops the whole call: no result comes back as failed."""
    fatal = LLMFatalError("HTTP 401 from somewhere", status_code=401, fix="set OPENAI_API_KEY")
    client = ScriptedClient([[VALID, fatal, VALID]])
    with pytest.raises(LLMFatalError) as info:
        client.chat_many([USER, USER, USER], schema=Answer)
    assert info.value is fatal and fatal.reason == "fatal_configuration" and isinstance(fatal, LLMError)
    client = ScriptedClient([["bad"], [fatal]])  # met while re-asking
    with pytest.raises(LLMFatalError):
        client.chat(USER, schema=Answer)


def test_request_error_during_reask_ends_that_conversation():
    failure = LLMRequestError("boom")
    client = ScriptedClient([["bad"], [failure]])
    [result] = client.chat_many([USER], schema=Answer)
    assert result is failure


def test_reasoning_and_finish_reason_carried_to_result():
    client = ScriptedClient([[Completion(VALID, reasoning="thinking...", finish_reason="length")]])
    result = client.chat(USER, schema=Answer)
    assert result.reasoning == "thinking..." and result.finish_reason == "length" and result.text == VALID


def test_empty_batch():
    client = ScriptedClient([[]])
    assert client.chat_many([]) == []


# --------------------------------------------------------------------------------------------------------------
# Argument checking


@pytest.mark.parametrize("conversations, where", [
    ([[]], "conversation 0"),
    (["hello"], "conversation 0"),
    ([USER, [{"role": "user"}]], "conversation 1, message 0"),
    ([USER, USER, [{"role": "user", "content": "hi"}, {"role": "tool", "content": "x"}]], "conversation 2, message 1"),
    ([[{"role": "user", "content": 3}]], "conversation 0, message 0"),
    ([["user", "hi"]], "conversation 0, message 0"),
    ([None], "conversation 0"),
])
def test_bad_conversation_shapes(conversations, where):
    client = ScriptedClient(lambda *a: pytest.fail("must not reach the backend"))
    with pytest.raises(ValueError) as info:
        client.chat_many(conversations)
    assert str(info.value).startswith(where)
    assert not client.calls


def test_bad_single_conversation():
    client = ScriptedClient(lambda *a: pytest.fail("must not reach the backend"))
    with pytest.raises(ValueError, match="message 1"):
        client.chat([{"role": "system", "content": "s"}, {"role": "bot", "content": "x"}])
    with pytest.raises(ValueError, match="non-empty list"):
        client.chat("just a string")  # type: ignore[arg-type]


@pytest.mark.parametrize("kwargs, match", [({"max_reasks": -1}, "max_reasks"), ({"max_tokens": 0}, "max_tokens"),
                                           ({"temperature": -0.1}, "temperature")])
def test_bad_client_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ScriptedClient([], **kwargs)


def test_make_client_unknown_backend_lists_valid_ones():
    with pytest.raises(ValueError) as info:
        make_client("vllm-direct")
    message = str(info.value)
    assert "vllm-direct" in message
    for backend in BACKENDS:
        assert backend in message
    assert set(BACKENDS) == {"local", "openai"}


def test_make_client_openai_needs_model():
    with pytest.raises(ValueError, match="model"):
        make_client("openai", base_url="http://127.0.0.1:9/v1")


def test_make_client_openai_is_case_insensitive():
    client = make_client(" OpenAI ", model="m", base_url="http://127.0.0.1:9/v1", api_key=SECRET)
    assert isinstance(client, OpenAIClient) and client.backend == "openai" and client.model == "m"


# --------------------------------------------------------------------------------------------------------------
# Synchronous wrappers


def test_run_sync_without_event_loop():
    async def double(x):
        await asyncio.sleep(0)
        return 2 * x

    assert run_sync(double(21)) == 42
    assert ScriptedClient([["plain"]]).chat(USER).text == "plain"


def test_run_sync_inside_running_event_loop():
    """Jupyter calls the sync API from inside a running loop; it must not raise 'event loop is running'."""
    client = ScriptedClient([["first"], [VALID, VALID]])

    async def notebook_cell():
        asyncio.get_running_loop()  # a loop is running here
        one = client.chat(USER)
        many = client.chat_many([USER, USER], schema=Answer)
        direct = run_sync(asyncio.sleep(0, result="slept"))
        return one, many, direct

    one, many, direct = asyncio.run(notebook_cell())
    assert one.text == "first"
    assert [r.data.answer for r in many] == ["B", "B"]
    assert direct == "slept"


def test_async_api():
    client = ScriptedClient([["a"], ["b", "c"]])

    async def main():
        return await client.achat(USER), await client.achat_many([USER, USER])

    one, many = asyncio.run(main())
    assert one.text == "a" and [r.text for r in many] == ["b", "c"]


# --------------------------------------------------------------------------------------------------------------
# The openai backend against a canned loopback HTTP server (protocol shape only; the real server is in the
# integration tests)


def chat_completion_body(content: str = "hi", **message_extra) -> dict:
    return {
        "id": "chatcmpl-test", "object": "chat.completion", "created": 0, "model": "fake-model",
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": content, **message_extra}}],
        "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
    }


class CannedServer(LoopbackHTTPServer):
    """A loopback HTTP server answering every POST with the next canned (status, headers, body); the last repeats."""

    def __init__(self, responses: list[tuple[int, dict, dict | str]], models: list[str] | None = None):
        self.responses = responses
        self.requests: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - GET /models, when ``models`` is given
                listing = {"object": "list", "data": [{"id": m, "object": "model", "created": 0, "owned_by": "me"}
                                                      for m in models or ()]}
                data = json.dumps(listing).encode()
                self.send_response(200 if models is not None and self.path.endswith("/models") else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode()
                with lock:
                    index = len(outer.requests)
                    headers = {name.lower(): value for name, value in self.headers.items()}
                    outer.requests.append({"path": self.path, "headers": headers,
                                           "json": json.loads(body) if body else None})
                status, headers, payload = outer.responses[min(index, len(outer.responses) - 1)]
                data = (payload if isinstance(payload, str) else json.dumps(payload)).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):  # keep test output quiet
                pass

        lock = threading.Lock()
        super().__init__(Handler)


def openai_client(base_url: str, **kwargs) -> OpenAIClient:
    options = dict(api_key=SECRET, timeout=5.0, max_retries=0, progress=False)
    options.update(kwargs)
    return OpenAIClient("fake-model", base_url=base_url, **options)


def assert_secret_absent(*things, secret: str = SECRET):
    for thing in things:
        assert secret not in str(thing), f"API key leaked in {type(thing).__name__}"
        assert secret not in repr(thing), f"API key leaked in repr of {type(thing).__name__}"


def test_api_key_not_in_repr_or_str():
    client = make_client("openai", model="m", base_url="http://127.0.0.1:9/v1", api_key=SECRET)
    assert "**********" in repr(client)
    assert_secret_absent(client, vars(client))
    assert client._api_key.get_secret_value() == SECRET  # held, just never shown


def test_api_key_from_env(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    client = make_client("openai", model="m")
    assert client.base_url == "http://127.0.0.1:9/v1"
    assert client._api_key.get_secret_value() == SECRET
    assert_secret_absent(client, vars(client))


def test_api_key_from_env_is_sent(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    with CannedServer([(200, {}, chat_completion_body("ok"))]) as server:
        client = OpenAIClient("fake-model", base_url=server.base_url, max_retries=0, progress=False)
        assert client.chat(USER).text == "ok"
    assert server.requests[0]["headers"].get("authorization") == f"Bearer {SECRET}"


def test_placeholder_key_without_one(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with CannedServer([(200, {}, chat_completion_body("ok"))]) as server:
        client = OpenAIClient("fake-model", base_url=server.base_url, max_retries=0, progress=False)
        assert client.chat(USER).text == "ok"
    assert server.requests[0]["headers"].get("authorization") == "Bearer EMPTY"  # servers that ignore keys need one


def test_no_server_at_the_first_request_is_fatal_and_keeps_key_secret():
    """Nothing listens at base_url and nothing ever answered there: after its retries the client stops with the
    question and the fix, instead of returning a failure per conversation."""
    port = free_loopback_port()  # nothing listens there now
    client = openai_client(f"http://127.0.0.1:{port}/v1", timeout=2.0, max_retries=1)
    with pytest.raises(LLMFatalError) as info:
        client.chat_many([USER, USER])
    error = info.value
    assert error.reason == "fatal_configuration" and error.status_code is None
    assert f"is the server running at http://127.0.0.1:{port}/v1?" in str(error)
    assert "vllm serve fake-model" in str(error) and "base_url" in error.fix
    assert_secret_absent(error, error.args)
    assert SECRET not in "".join(traceback.format_exception(error))


def test_connection_failure_after_the_server_answered_is_a_request_error_in_place():
    """A server that answered and then went away is a transport failure (retried, resumed), not a fatal one."""
    with CannedServer([(200, {}, chat_completion_body("ok"))]) as server:
        client = openai_client(server.base_url, timeout=2.0, max_retries=0)
        assert client.chat(USER).text == "ok"
    [result] = client.chat_many([USER])  # the server is gone: connection refused
    assert isinstance(result, LLMRequestError) and not isinstance(result, LLMFatalError)
    assert result.reason == "request_failed" and result.status_code is None
    assert server.base_url.removesuffix("/v1") in str(result)
    assert_secret_absent(result, result.args)
    with pytest.raises(LLMRequestError) as info:
        client.chat(USER)
    assert_secret_absent(info.value)
    assert SECRET not in "".join(traceback.format_exception(info.value))


@pytest.mark.parametrize("status, cause, fix", [
    (401, "rejected the API key", "set OPENAI_API_KEY to a key that"),
    (403, "rejected the API key", "set OPENAI_API_KEY to a key that"),
    (404, "does not know the model 'fake-model'", "a base_url that ends in /v1"),
])
def test_fatal_answers_are_not_retried_and_name_cause_and_fix(status, cause, fix):
    """401, 403 and 404 are sent once per conversation, even with retries left and a server asking for a retry
    (x-should-retry), and end the call with the cause and the fix; a key the body echoes is masked."""
    body = {"error": {"message": f"no access for {SECRET}", "type": "invalid_request_error"}}
    with CannedServer([(status, {"x-should-retry": "true"}, body)]) as server:
        client = openai_client(server.base_url, max_retries=3)
        with pytest.raises(LLMFatalError) as info:
            client.chat_many([USER, USER])
    assert len(server.requests) == 2  # one each, no retry
    error = info.value
    assert error.status_code == status and error.reason == "fatal_configuration"
    assert f"HTTP {status} from {server.base_url}" in str(error) and cause in str(error) and fix in error.fix
    assert "no access for **********" in str(error)
    assert_secret_absent(error, error.args, error.fix)


def test_unknown_model_error_lists_the_models_the_server_serves():
    body = {"object": "error", "message": "The model `fake-model` does not exist.", "type": "NotFoundError"}
    with CannedServer([(404, {}, body)], models=["openai/gpt-oss-20b"]) as server:
        with pytest.raises(LLMFatalError) as info:
            openai_client(server.base_url).chat(USER)
    assert "The model `fake-model` does not exist" in str(info.value)
    assert "The server serves: 'openai/gpt-oss-20b'." in str(info.value)


def test_client_errors_other_than_fatal_ones_stay_in_place():
    """A 400 (one request the server refuses) fails that conversation only; the call goes on."""
    with CannedServer([(400, {}, {"error": {"message": "too long"}}), (200, {}, chat_completion_body("ok"))]) \
            as server:
        client = openai_client(server.base_url, concurrency=1)
        results = client.chat_many([USER, USER])
    assert isinstance(results[0], LLMRequestError) and results[0].status_code == 400
    assert isinstance(results[1], ChatResult) and results[1].text == "ok"


@pytest.mark.parametrize("status", [500, 429])
def test_http_error_retried_then_typed_without_key(status):
    # The body echoes the key, as a careless proxy might; the error message must still not show it.
    body = {"error": {"message": f"overloaded (your key was {SECRET})", "type": "server_error"}}
    with CannedServer([(status, {"retry-after-ms": "20"}, body)]) as server:
        client = openai_client(server.base_url, max_retries=2)
        [result] = client.chat_many([USER])
    assert len(server.requests) == 3  # the first try and 2 retries
    assert isinstance(result, LLMRequestError)
    assert result.status_code == status and result.reason == "request_failed"
    assert str(status) in str(result) and "overloaded" in str(result)
    assert_secret_absent(result, result.args)


def test_http_error_with_sdk_backoff_is_retried():
    with CannedServer([(500, {}, {"error": {"message": "flaky"}}), (200, {}, chat_completion_body("recovered"))]) \
            as server:
        client = openai_client(server.base_url, max_retries=1)
        result = client.chat(USER)
    assert result.text == "recovered" and len(server.requests) == 2


def test_client_error_not_retried():
    with CannedServer([(400, {}, {"error": {"message": "bad model name"}})]) as server:
        client = openai_client(server.base_url, max_retries=3)
        [result] = client.chat_many([USER])
    assert len(server.requests) == 1
    assert isinstance(result, LLMRequestError) and result.status_code == 400 and "bad model name" in str(result)


@pytest.mark.parametrize("field", ["reasoning", "reasoning_content"])
def test_reasoning_fields_kept_apart_from_text(field):
    body = chat_completion_body(VALID, **{field: "The user asks which option; B fits."})
    with CannedServer([(200, {}, body)]) as server:
        client = openai_client(server.base_url)
        result = client.chat(USER, schema=Answer)
    assert result.text == VALID and result.data.answer == "B"
    assert result.reasoning == "The user asks which option; B fits."
    assert "B fits" not in result.text
    assert result.usage.prompt_tokens == 11 and result.usage.completion_tokens == 7
    assert result.finish_reason == "stop"


def test_request_shape_sent_to_server():
    with CannedServer([(200, {}, chat_completion_body(VALID))]) as server:
        client = openai_client(server.base_url, temperature=0.2, max_tokens=33, seed=9,
                               extra_body={"top_k": 20})
        client.chat(USER, schema=Answer)
        client.structured_output = False
        client.chat(USER, schema=Answer)
    first, second = (r["json"] for r in server.requests)
    assert server.requests[0]["path"] == "/v1/chat/completions"
    assert first["model"] == "fake-model" and first["messages"] == USER
    assert (first["temperature"], first["max_tokens"], first["seed"], first["top_k"]) == (0.2, 33, 9, 20)
    assert first["response_format"] == JSONSchema(Answer).response_format()
    assert "response_format" not in second
    assert "top_p" not in first  # the server's default (1) unless the client sets one


def test_per_conversation_schemas_sent_as_each_requests_response_format():
    with CannedServer([(200, {}, chat_completion_body(VALID))]) as server:
        results = openai_client(server.base_url).chat_many(
            [USER, [{"role": "user", "content": "second"}], [{"role": "user", "content": "third"}]],
            schemas=[Answer, DICT_SCHEMA, None])
    assert all(isinstance(r, ChatResult) for r in results)
    sent = {r["json"]["messages"][0]["content"]: r["json"].get("response_format") for r in server.requests}
    assert sent == {USER[0]["content"]: JSONSchema(Answer).response_format(),
                    "second": JSONSchema(DICT_SCHEMA).response_format(), "third": None}


def test_top_p_sent_to_server_and_validated():
    with CannedServer([(200, {}, chat_completion_body(VALID))]) as server:
        openai_client(server.base_url, top_p=0.9).chat(USER)
    assert server.requests[0]["json"]["top_p"] == 0.9
    for bad in (0, 1.5):
        with pytest.raises(ValueError, match="top_p"):
            openai_client("http://127.0.0.1:9/v1", top_p=bad)


def test_http_error_detail_kept_in_message():
    detail = "Server is pinned to '/models/x'; requested 'smollm2'."
    with CannedServer([(400, {}, {"detail": detail})]) as server:
        [result] = openai_client(server.base_url).chat_many([USER])
    assert isinstance(result, LLMRequestError) and result.status_code == 400
    assert "pinned" in str(result)


def test_openai_reask_over_http():
    with CannedServer([(200, {}, chat_completion_body("not json")), (200, {}, chat_completion_body(VALID))]) \
            as server:
        client = openai_client(server.base_url)
        result = client.chat(USER, schema=DICT_SCHEMA)
    assert result.attempts == 2 and result.data["answer"] == "B"
    messages = server.requests[1]["json"]["messages"]
    assert messages[1] == {"role": "assistant", "content": "not json"} and messages[2]["role"] == "user"
    assert result.usage.calls == 2 and result.usage.prompt_tokens == 22


def test_no_choices_is_a_request_error():
    body = chat_completion_body()
    body["choices"] = []
    with CannedServer([(200, {}, body)]) as server:
        [result] = openai_client(server.base_url).chat_many([USER])
    assert isinstance(result, LLMRequestError) and "no choices" in str(result)


def test_malformed_response_is_a_request_error_in_place():
    with CannedServer([(200, {}, "this is not json")]) as server:
        results = openai_client(server.base_url).chat_many([USER, USER])
    assert all(isinstance(r, LLMRequestError) and r.reason == "request_failed" for r in results)


def test_bad_concurrency():
    with pytest.raises(ValueError, match="concurrency"):
        OpenAIClient("m", base_url="http://127.0.0.1:9/v1", concurrency=0)
