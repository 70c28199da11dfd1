"""`make lab`: JupyterLab on loopback at the repository root; every notebook opens through it and chapter 00 runs in
the course's kernel (``ec2er``), which the target registers for this environment."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import nbformat
import pytest

from ec2er_utils.notebooks import NOTEBOOKS_DIR
from ec2er_utils.paths import REPO_ROOT
from tools.local_server import free_loopback_port

KERNEL_NAME = "ec2er"  # the Makefile's KERNEL
NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))
STARTUP_S = 45  # make -> jupyter lab -> listening, on a busy 2-core machine
WIDGETS_EXTENSION = "@jupyter-widgets/jupyterlab-manager"  # renders the tqdm bars


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_notebook_names_the_course_kernel(path):
    assert nbformat.read(path, as_version=4).metadata["kernelspec"]["name"] == KERNEL_NAME


# --------------------------------------------------------------------------------------------------------------
# The real server, started by the Makefile target


def _isolated_jupyter_env(home: Path) -> dict[str, str]:
    """The test's environment with Jupyter's user folders under ``home``: the kernel that `make lab` registers with
    ``--user`` goes there, and the user's own Jupyter set-up is neither read nor changed. The make variables of an
    enclosing `make test` are dropped so that only this test's VENV/LAB_ARGS apply."""
    env = {k: v for k, v in os.environ.items() if k not in {"MAKEFLAGS", "MFLAGS", "MAKELEVEL"}}
    for variable, folder in [("JUPYTER_DATA_DIR", "data"), ("JUPYTER_CONFIG_DIR", "config"),
                             ("JUPYTER_RUNTIME_DIR", "runtime")]:
        env[variable] = str(home / folder)
    return env


def _printed_token(process: subprocess.Popen, log: Path, url: str) -> str:
    """Wait until `make lab` prints ``url?token=...`` (what a user opens) and return the token."""
    pattern = re.compile(re.escape(url) + r"\?token=([0-9a-f]{32,})")
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        if found := pattern.search(log.read_text()):
            return found.group(1)
        if process.poll() is not None:
            pytest.fail(f"make lab exited with {process.returncode} before serving:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)
    pytest.fail(f"make lab printed no {url}?token=... within {STARTUP_S}s:\n{log.read_text()[-3000:]}")


def _run_cell(channel, code: str, timeout_s: float = 60) -> tuple[str, dict]:
    """Execute ``code`` over the kernel's websocket channel; returns (stream and error text, execute_reply)."""
    from jupyter_client.jsonutil import json_default
    from jupyter_client.session import Session

    request = Session().msg("execute_request", content={"code": code, "silent": False, "store_history": False,
                                                        "user_expressions": {}, "allow_stdin": False,
                                                        "stop_on_error": True})
    request["channel"] = "shell"
    channel.send(json.dumps(request, default=json_default))
    output, reply, idle = [], None, False
    deadline = time.monotonic() + timeout_s
    while reply is None or not idle:
        assert time.monotonic() < deadline, f"no reply within {timeout_s}s to {code[:60]!r}; so far: {output}"
        message = json.loads(channel.recv())
        if message.get("parent_header", {}).get("msg_id") != request["header"]["msg_id"]:
            continue
        kind, content = message["msg_type"], message["content"]
        if kind == "stream":
            output.append(content["text"])
        elif kind == "error":
            output.append("\n".join(content["traceback"]))
        elif kind == "execute_reply":
            reply = content
        elif kind == "status" and content["execution_state"] == "idle":
            idle = True
    return "".join(output), reply


def _stop(process: subprocess.Popen) -> None:
    """Last resort after a failure: end the process group that `make lab` leads."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_make_lab_serves_the_notebooks_and_runs_chapter_00_in_the_course_kernel(tmp_path):
    import psutil
    import requests
    import websocket

    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed, so `make lab` cannot run")
    port = free_loopback_port()
    lab_args = f"--no-browser --port={port} --ServerApp.port_retries=0"
    if os.geteuid() == 0:
        lab_args += " --allow-root"
    # -o: take the install as done (this environment is the installed one); VENV: the environment running the tests
    command = [make, "-s", "-o", f"{sys.prefix}/.ec2er-installed", "lab", f"VENV={sys.prefix}", f"LAB_ARGS={lab_args}"]
    base = f"http://127.0.0.1:{port}"

    log = tmp_path / "lab.log"
    started = time.monotonic()
    with log.open("w") as sink:
        process = subprocess.Popen(command, cwd=REPO_ROOT, env=_isolated_jupyter_env(tmp_path / "jupyter"),
                                   stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        # the URL with its token is printed: loopback, notebooks/ open
        token = _printed_token(process, log, f"{base}/lab/tree/notebooks")

        def api(method: str, path: str, **kwargs):
            return requests.request(method, base + path, headers={"Authorization": f"token {token}"}, timeout=30,
                                    **kwargs)


        page = api("get", "/lab")
        assert page.status_code == 200
        config = json.loads(page.text.split('id="jupyter-config-data"', 1)[1].split(">", 1)[1].split("</script>")[0])
        assert WIDGETS_EXTENSION in {e["name"] for e in config["federated_extensions"]}

        root = {item["name"] for item in api("get", "/api/contents").json()["content"]}
        assert {"notebooks", "Makefile", "ec2er_utils"} <= root  # served from the repository root
        listed = {item["name"] for item in api("get", "/api/contents/notebooks").json()["content"]
                  if item["type"] == "notebook"}
        assert listed == {p.name for p in NOTEBOOKS}
        for path in NOTEBOOKS:
            model = api("get", f"/api/contents/notebooks/{path.name}", params={"type": "notebook", "content": 1})
            assert model.status_code == 200, (path.name, model.text)
            notebook = nbformat.from_dict(model.json()["content"])
            nbformat.validate(notebook)
            assert notebook.metadata["kernelspec"]["name"] == KERNEL_NAME

        # chapter 00 in the kernel its metadata names, started the way JupyterLab starts it: a session
        chapter = nbformat.from_dict(api("get", "/api/contents/notebooks/00_personas.ipynb").json()["content"])
        session = api("post", "/api/sessions", json={
            "path": "notebooks/00_personas.ipynb", "name": "00_personas.ipynb", "type": "notebook",
            "kernel": {"name": chapter.metadata["kernelspec"]["name"]}})
        assert session.status_code == 201, session.text
        session = session.json()
        assert session["kernel"]["name"] == KERNEL_NAME
        descendants = psutil.Process(process.pid).children(recursive=True)  # make, the server, the kernel

        code = [c for c in chapter.cells if c.cell_type == "code"]
        parameters = next(i for i, c in enumerate(code) if "parameters" in c.metadata.get("tags", []))
        channel = websocket.create_connection(
            f"ws://127.0.0.1:{port}/api/kernels/{session['kernel']['id']}/channels?session_id={uuid.uuid4()}",
            header={"Authorization": f"token {token}"}, timeout=60)
        try:
            for cell in code[parameters:parameters + 2]:  # the parameters, then the imports cell
                output, reply = _run_cell(channel, cell.source)
                assert reply["status"] == "ok", output
            assert "persona source: " in output
            output, reply = _run_cell(channel, "import os, sys\nfrom ec2er_utils.paths import REPO_ROOT\n"
                                               "print(sys.prefix, REPO_ROOT, os.getcwd(), sep='\\n')")
            assert reply["status"] == "ok", output
        finally:
            channel.close()
        # the registered kernel runs this environment, this checkout's package, in the notebook's folder
        assert output.splitlines() == [sys.prefix, str(REPO_ROOT), str(NOTEBOOKS_DIR)]

        assert api("delete", f"/api/sessions/{session['id']}").status_code == 204
        assert api("get", "/api/kernels").json() == []
        assert api("post", "/api/shutdown").status_code == 200
        assert process.wait(timeout=30) == 0, log.read_text()[-3000:]
    finally:
        _stop(process)
    leftovers = [p for p in descendants if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert leftovers == [], f"still running after shutdown: {[(p.pid, p.cmdline()) for p in leftovers]}"
    assert time.monotonic() - started < 60
