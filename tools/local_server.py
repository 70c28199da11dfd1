"""A local OpenAI-compatible server for the embedded model: ``transformers serve --continuous-batching``.

Developer tooling (not in the installed package). Used by the integration and fault tests (started and stopped by
a fixture), by ``benchmarks/llm_client.py`` and ``benchmarks/generation.py``, and by anyone who wants the notebooks'
``openai`` backend without vLLM::

    with local_openai_server() as server:
        client = make_client("openai", model=server.model, base_url=server.base_url)

From a shell, ``python -m tools.local_server [--model PATH] [--port N]`` serves until Ctrl-C and prints the
``OPENAI_BASE_URL`` to use.

The server is pinned to one model (its FORCE_MODEL argument) and accepts exactly that string as ``model``.
It accepts ``response_format`` but does not enforce it, so the client's own validation and re-ask do the work.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

from colab.runtime import ServerStartError


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LocalOpenAIServer:
    """One ``transformers serve`` process on a loopback port; can be killed and restarted on the same port."""

    def __init__(self, model: str | None = None, *, port: int | None = None, log_path: Path | None = None,
                 start_timeout_s: float = 180.0):
        from ec2er_utils.models import checkpoint_path

        self.model = model if model and Path(model).is_dir() else checkpoint_path(model)
        self.port = port or free_loopback_port()
        self.log_path = Path(log_path) if log_path else Path(tempfile.mkdtemp(prefix="ec2er-serve-")) / "serve.log"
        self.start_timeout_s = start_timeout_s
        self.process: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def command(self) -> list[str]:
        script = Path(sys.executable).parent / "transformers"
        if not script.exists():
            raise ServerStartError(f"{script} not found: install the serving extra (pip install -e '.[serve]')")
        return [str(script), "serve", "--continuous-batching",
                # A small paged KV cache: sized by default from free RAM, it would take ~9 GB on a CPU.
                "--cb-block-size", "32", "--cb-num-blocks", "256", "--cb-max-batch-tokens", "1024",
                "--host", "127.0.0.1", "--port", str(self.port), "--device", "cpu", self.model]

    def start(self) -> LocalOpenAIServer:
        """Start the process and wait until ``/health`` answers; raises :class:`ServerStartError` otherwise."""
        env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1")
        env.pop("OPENAI_API_KEY", None)  # the server needs no key; keep secrets out of its environment and log
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:  # a file, not a pipe: a full pipe would stall the server
            self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, env=env, cwd=tempfile.gettempdir())
        deadline = time.monotonic() + self.start_timeout_s
        while not self.healthy():
            if self.process.poll() is not None:
                raise ServerStartError(f"transformers serve exited with code {self.process.returncode} before "
                                       f"answering; log tail:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise ServerStartError(f"transformers serve did not answer /health within "
                                       f"{self.start_timeout_s:.0f}s; log tail:\n{self.log_tail()}")
            time.sleep(0.5)
        return self

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as response:
                return json.loads(response.read().decode()).get("status") == "ok"
        except (urllib.error.URLError, OSError, ValueError):
            return False

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``grace_s``."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL, as a crashed or pre-empted server dies (fault tests)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError as err:
            return f"(cannot read {self.log_path}: {err})"

    def __enter__(self) -> LocalOpenAIServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


@contextmanager
def local_openai_server(model: str | None = None, **options):
    """Serve ``model`` (default: the embedded model) on a free loopback port for the duration of the block."""
    server = LocalOpenAIServer(model, **options)
    with server:
        yield server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="a checkpoint folder or a registry name (default: the embedded model)")
    parser.add_argument("--port", type=int, help="loopback port (default: a free one)")
    args = parser.parse_args(argv)
    with local_openai_server(args.model, port=args.port) as server:
        print(f"serving {server.model}\nOPENAI_BASE_URL={server.base_url}  (log: {server.log_path}); Ctrl-C stops it",
              flush=True)
        try:
            return server.process.wait()  # the server's exit code when it ends by itself
        except KeyboardInterrupt:
            return 0


if __name__ == "__main__":
    sys.exit(main())
