"""The pinned GPU install sets, resolved with pip's dry run against Colab's published GPU runtime.

Two locks, both written by this tool and read by the Colab install (``colab.install``) and the launcher
(``colab.runtime.ensure_vllm_venv``):

``requirements/colab-gpu.txt``
    What goes into Colab's own Python on top of the packages Colab ships. Colab's runtime is modelled as pip
    constraints, one ``name==version`` per package of its published ``pip freeze`` (``../shared/colab/``, from
    googlecolab/backend-info), so torch, ipykernel, ipython, ipywidgets, numpy and everything else Colab has stay as
    they are; only the packages in :data:`UPGRADES` may move, each for the reason given there. Packages Colab
    installed from outside PyPI (``torch==2.11.0+cu128`` from PyTorch's index, ``google-colab`` from a file) are
    offered to pip as stand-in wheels of the same name and version without dependencies: on Colab they and what
    they need are installed already. The lock lists the packages whose version differs from Colab's or that Colab
    lacks.
``requirements/colab-vllm.txt``
    vLLM's own virtual environment (vLLM is only ever a server subprocess): :data:`VLLM_REQUIREMENT` and everything
    it needs, exact versions, so that vLLM's torch pin never meets the torch Unsloth trains with.

pip evaluates environment markers (``python_version > "3.11"``) for the interpreter it runs in, not for
``--python-version``; the Colab resolutions therefore run under a real Python 3.13 (``python3.13`` on ``PATH``, a
pyenv install, or ``$EC2ER_PYTHON313``), with Colab's wheel platforms (Ubuntu 22.04, glibc 2.35) and binary wheels
only. :func:`compatibility_problems` then checks what pip cannot know: that xformers is the build Unsloth pairs with
the resolved torch, that Colab's own packages are untouched except the upgrades, and that vLLM got the torch it pins.

    python -m tools.colab_lock            # resolve and check; print what would change
    python -m tools.colab_lock --write    # ... and rewrite both lock files
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from colab.install import COLAB_LOCK, RUNTIME_LINE, VLLM_LOCK, parse_lock
from ec2er_utils.paths import REPO_ROOT, shared_dir

# The newest vLLM whose torch pin (2.10.0) is a CUDA 12.8 build on PyPI, the CUDA of Colab's own torch
# (2.11.0+cu128), so it runs on the driver Colab's runtime is made for; vLLM 0.20 and later pin torch 2.11.0, whose
# PyPI build is CUDA 13.0 (driver 580 or newer). Its dependencies are taken as PyPI had them the day after its
# release: the versions vLLM was released and used with, not ones published months later.
VLLM_REQUIREMENT = "vllm==0.19.1"
VLLM_RESOLVED_AS_OF = "2026-04-19T00:00:00Z"
COLAB_PYTHON = "3.13"
# Colab's GPU image is Ubuntu 22.04 (glibc 2.35): every manylinux tag up to 2_35 installs there.
COLAB_PLATFORMS = ([f"manylinux_2_{minor}_x86_64" for minor in range(35, 4, -1)]
                   + ["manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"])
# Colab's packages that the lock moves to another version, and why; every other package Colab has stays as it is.
UPGRADES = {
    "certifi": "unsloth and unsloth-zoo 2026.10.9 need >=2026.10.19",
    "datasets": "unsloth 2026.10.9 and unsloth-zoo exclude 4.0.*; trl 1.15 needs >=4.7",
    "pyarrow": "every datasets release unsloth accepts from 4.1 on needs >=21 (Unsloth's own Colab notebooks upgrade "
               "it the same way, through datasets 4.3.0)",
    "torchao": "unsloth-zoo 2026.10.9 needs >=0.13; 0.18.0 is built for torch >=2.11.0 (its import guard)",
}
# Requirements of ec2er that Colab meets with its own, older Jupyter front end. The package's lower bounds are the
# CPU install's; in Colab the kernel and the widgets are Colab's, and upgrading them breaks its front end.
COLAB_PROVIDES = ("ipykernel", "ipywidgets")
# The extra the package's pyproject declares for the GPU (bitsandbytes; vLLM lives in its own venv).
GPU_EXTRA = "gpu"
RESOLVE_TIMEOUT_S = 900
_PROGRESS = ("Collecting", "Using", "Downloading", "Processing", "Requirement already", "Looking in", "━")


# --------------------------------------------------------------------------------------------------------------
# Colab's runtime, as published


@dataclass(frozen=True)
class ColabRuntime:
    """Colab's GPU runtime from ``pip-freeze.gpu.txt`` and ``os-info-gpu.txt``."""

    python: str  # e.g. "3.13.15"
    packages: dict[str, str]  # canonical name -> version (local segment kept: "2.11.0+cu128")
    source: str  # where the files came from, for the lock's header

    def version(self, name: str) -> str | None:
        return self.packages.get(canonicalize_name(name))

    def describe(self) -> str:
        keys = ("torch", "transformers", "ipykernel", "ipython")
        return f"Python {self.python}, " + ", ".join(f"{k} {self.version(k)}" for k in keys)

    def runtime_line(self) -> str:
        """The machine-readable header line the Colab install compares with the live runtime."""
        return f"{RUNTIME_LINE} python={self.python} torch={self.version('torch')}"


def colab_runtime_dir() -> Path | None:
    shared = shared_dir()
    folder = shared / "colab" if shared else None
    return folder if folder and (folder / "pip-freeze.gpu.txt").is_file() else None


def _version_from_url(url: str) -> str | None:
    """The version in a wheel or sdist file name (``google_colab-1.0.0.tar.gz`` -> ``1.0.0``)."""
    name = url.split("#", 1)[0].rstrip("/").rsplit("/", 1)[-1]
    match = re.match(r"^[A-Za-z0-9_.]+?-(\d[^-]*?)(?:-|\.tar\.gz$|\.zip$|\.whl$)", name)
    return match.group(1) if match else None


def parse_freeze(text: str) -> dict[str, str]:
    """``name==version`` and ``name @ URL`` lines of a ``pip freeze`` (a URL without a version in its file name, a
    git checkout say, is left out: nothing can pin it)."""
    packages = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if " @ " in line:
            name, url = (part.strip() for part in line.split(" @ ", 1))
            version = _version_from_url(url)
        else:
            name, _, version = line.partition("==")
        if version:
            packages[canonicalize_name(name)] = version.strip()
    return packages


def load_colab_runtime(folder: Path | None = None) -> ColabRuntime:
    folder = folder or colab_runtime_dir()
    if folder is None:
        raise FileNotFoundError("Colab's runtime files are not there: ../shared/colab/pip-freeze.gpu.txt (from "
                                "github.com/googlecolab/backend-info) is needed to resolve the Colab lock")
    os_info = (folder / "os-info-gpu.txt").read_text(encoding="utf-8")
    python = re.search(r"^Python (\d+\.\d+\.\d+)", os_info, re.MULTILINE)
    if python is None:
        raise ValueError(f"{folder / 'os-info-gpu.txt'}: no 'Python X.Y.Z' line")
    freeze = (folder / "pip-freeze.gpu.txt").read_text(encoding="utf-8")
    readme = folder / "README.md"
    origin = re.search(r"commit (\w+) of (\d{4}-\d{2}-\d{2})", readme.read_text(encoding="utf-8")) \
        if readme.is_file() else None
    digest = hashlib.sha256(freeze.encode()).hexdigest()[:12]
    source = (f"googlecolab/backend-info commit {origin.group(1)} of {origin.group(2)}" if origin else str(folder)) \
        + f", pip-freeze.gpu.txt sha256 {digest}"
    return ColabRuntime(python.group(1), parse_freeze(freeze), source)


# --------------------------------------------------------------------------------------------------------------
# What to resolve


def pyproject_requirements(root: Path = REPO_ROOT, extras: Sequence[str] = (GPU_EXTRA,)) -> list[str]:
    """The package's dependencies plus those of ``extras``, as written in ``pyproject.toml``."""
    project = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    optional = project.get("optional-dependencies", {})
    unknown = [extra for extra in extras if extra not in optional]
    if unknown:
        raise ValueError(f"pyproject.toml has no extra {', '.join(unknown)}")
    return list(project["dependencies"]) + [r for extra in extras for r in optional[extra]]


def colab_requirements(root: Path = REPO_ROOT) -> list[str]:
    """What the Colab lock resolves: the package's requirements with its GPU extra, less :data:`COLAB_PROVIDES`."""
    provided = {canonicalize_name(n) for n in COLAB_PROVIDES}
    return [r for r in pyproject_requirements(root) if canonicalize_name(Requirement(r).name) not in provided]


def colab_constraints(runtime: ColabRuntime) -> list[str]:
    """Colab's packages at Colab's versions, except :data:`UPGRADES`."""
    upgrades = {canonicalize_name(n) for n in UPGRADES}
    return [f"{name}=={version}" for name, version in sorted(runtime.packages.items()) if name not in upgrades]


def write_stand_in_wheels(packages: Mapping[str, str], folder: Path) -> int:
    """One empty ``py3-none-any`` wheel per package and version, without dependencies: pip takes one only where no
    real wheel of that version fits (a PyTorch-index build such as ``2.11.0+cu128``, a package Colab installed from
    a file), as real wheels carry more specific tags."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, version in packages.items():
        project = re.sub(r"[-.]+", "_", name)
        dist_info = f"{project}-{version}.dist-info"
        files = {f"{dist_info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
                 f"{dist_info}/WHEEL": "Wheel-Version: 1.0\nGenerator: tools.colab_lock\nRoot-Is-Purelib: true\n"
                                       "Tag: py3-none-any\n"}
        files[f"{dist_info}/RECORD"] = "".join(f"{path},,\n" for path in files) + f"{dist_info}/RECORD,,\n"
        with zipfile.ZipFile(folder / f"{project}-{version}-py3-none-any.whl", "w") as wheel:
            for path, text in files.items():
                wheel.writestr(path, text)
    return len(packages)


# --------------------------------------------------------------------------------------------------------------
# pip's dry run


def interpreter_version(python: str) -> str | None:
    """``X.Y.Z`` of an interpreter, or None when it does not run (a pyenv shim for a version not selected, say)."""
    try:
        result = subprocess.run([python, "-c", "import platform; print(platform.python_version())"],
                                capture_output=True, text=True, timeout=60)
    except OSError:
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def python313() -> str | None:
    """A Python 3.13 interpreter that runs: ``$EC2ER_PYTHON313``, ``python3.13`` on PATH, or a pyenv install."""
    candidates = [os.environ.get("EC2ER_PYTHON313"), shutil.which("python3.13")]
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    candidates += sorted(str(p) for p in pyenv.glob(f"{COLAB_PYTHON}*/bin/python{COLAB_PYTHON}"))
    for candidate in candidates:
        version = interpreter_version(candidate) if candidate else None
        if version and version.startswith(COLAB_PYTHON + "."):
            return candidate
    return None


def pip_environment() -> dict[str, str]:
    """The environment for pip: this machine's pip configuration (local wheel folders, an index mirror, a torch
    cap) left out, so that the result is what PyPI gives anyone."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_") or k in ("PIP_CERT", "PIP_DEFAULT_TIMEOUT")}
    return dict(env, PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1")


@dataclass
class Resolution:
    """What pip's dry run would install: ``{canonical name: {"name", "version", "requires_dist", "url"}}``."""

    label: str
    python: str
    packages: dict[str, dict]
    seconds: float

    def version(self, name: str) -> str | None:
        entry = self.packages.get(canonicalize_name(name))
        return entry["version"] if entry else None


class ResolutionError(RuntimeError):
    """pip could not resolve the set; the message carries pip's own explanation."""


def dry_run_command(python: str, report: Path, requirements: Sequence[str], *, constraints: Path | None = None,
                    find_links: Path | None = None, platforms: Sequence[str] = (),
                    options: Sequence[str] = ()) -> list[str]:
    # This environment's pip run under ``python`` (pip's --python): markers are evaluated for that interpreter.
    command = [sys.executable, "-m", "pip", "--python", python, "install", "--dry-run", "--ignore-installed",
               "--report", str(report), "--only-binary=:all:"]
    for platform in platforms:
        command += ["--platform", platform]
    if platforms:
        version = interpreter_version(python)
        if version is None:
            raise FileNotFoundError(f"the interpreter {python} does not run")
        command += ["--python-version", ".".join(version.split(".")[:2]), "--implementation", "cp"]
    if constraints is not None:
        command += ["-c", str(constraints)]
    if find_links is not None:
        command += ["--find-links", str(find_links)]
    return command + list(options) + list(requirements)


def resolve(label: str, python: str, requirements: Sequence[str], *, constraints: Sequence[str] = (),
            stand_ins: Mapping[str, str] | None = None, platforms: Sequence[str] = (), options: Sequence[str] = (),
            timeout: float = RESOLVE_TIMEOUT_S) -> Resolution:
    """``pip install --dry-run --report`` of ``requirements`` under ``python``; raises :class:`ResolutionError` with
    pip's output when it cannot resolve them."""
    with tempfile.TemporaryDirectory(prefix="colab-lock-") as tmp:
        tmp = Path(tmp)
        constraints_file = None
        if constraints:
            constraints_file = tmp / "constraints.txt"
            constraints_file.write_text("\n".join(constraints) + "\n", encoding="utf-8")
        find_links = None
        if stand_ins:
            find_links = tmp / "stand-ins"
            write_stand_in_wheels(stand_ins, find_links)
        report = tmp / "report.json"
        command = dry_run_command(python, report, requirements, constraints=constraints_file, find_links=find_links,
                                  platforms=platforms, options=options)
        started = time.monotonic()
        result = subprocess.run(command, capture_output=True, text=True, env=pip_environment(), timeout=timeout)
        seconds = time.monotonic() - started
        if result.returncode != 0 or not report.is_file():
            lines = [line for line in (result.stderr + result.stdout).splitlines()
                     if not line.lstrip().startswith(_PROGRESS) and "is ignored" not in line]
            raise ResolutionError(f"{label}: pip could not resolve the set (exit {result.returncode}):\n"
                                  + "\n".join(lines[-40:]))
        installs = json.loads(report.read_text(encoding="utf-8"))["install"]
    packages = {}
    for item in installs:
        metadata = item["metadata"]
        packages[canonicalize_name(metadata["name"])] = {
            "name": metadata["name"], "version": metadata["version"],
            "requires_dist": metadata.get("requires_dist") or [], "url": item["download_info"]["url"]}
    return Resolution(label, interpreter_version(python) or "?", packages, seconds)


def pins(lock: Mapping[str, str]) -> list[str]:
    return [f"{name}=={version}" for name, version in lock.items()]


def resolve_colab(runtime: ColabRuntime, python: str, lock: Mapping[str, str] | None = None) -> Resolution:
    """The Colab set against Colab's runtime; with ``lock``, its pins too (checking the lock, not making one)."""
    return resolve("colab", python, colab_requirements() + pins(lock or {}), constraints=colab_constraints(runtime),
                   stand_ins=runtime.packages, platforms=COLAB_PLATFORMS)


def resolve_vllm(python: str, lock: Mapping[str, str] | None = None, *, platforms: Sequence[str] = COLAB_PLATFORMS,
                 label: str = "vllm") -> Resolution:
    """vLLM's venv (:data:`VLLM_REQUIREMENT`), or with ``lock`` exactly the lock's pins."""
    return resolve(label, python, pins(lock) if lock else [VLLM_REQUIREMENT], platforms=platforms,
                   options=["--uploaded-prior-to", VLLM_RESOLVED_AS_OF])


def resolve_workstation(python: str, runtime: ColabRuntime, lock: Mapping[str, str]) -> Resolution:
    """The package with its GPU extra for a workstation's own Python and platform, held to the Colab lock's pins
    and to Colab's torch version (the README's workstation install: torch first, then ``-c colab-gpu.txt``)."""
    torch = f"torch=={Version(runtime.version('torch')).base_version}"
    return resolve("workstation", python, pyproject_requirements(), constraints=[torch, *pins(lock)])


# --------------------------------------------------------------------------------------------------------------
# Checks pip cannot make


def unsloth_xformers_pins(unsloth_requires: Iterable[str]) -> dict[str, set[str]]:
    """torch version -> the xformers versions Unsloth's ``cuXXXonlytorchNNN`` extras pair with it, read from
    unsloth's own metadata (an extra such as ``cu128onlytorch2110`` pins ``torch==2.11.0+cu128`` and
    ``xformers==0.0.35``; one that pins no torch names it in its extra: ``torch2100`` is 2.10.0)."""
    by_extra: dict[str, dict[str, str]] = {}
    for line in unsloth_requires:
        requirement = Requirement(line)
        extra = re.search(r'extra == "(cu\d+onlytorch(\d+))"', str(requirement.marker or ""))
        pinned = [s.version for s in requirement.specifier if s.operator == "=="]
        if extra and pinned and requirement.name in ("torch", "xformers"):
            by_extra.setdefault(extra.group(1), {"digits": extra.group(2)})[requirement.name] = pinned[0]
    pairs: dict[str, set[str]] = {}
    for found in by_extra.values():
        if "xformers" not in found:
            continue
        if "torch" in found:
            torch = Version(found["torch"]).base_version
        else:  # torch2100 -> 2.10.0, torch271 -> 2.7.1
            digits = found["digits"]
            torch = f"{digits[0]}.{digits[1:-1]}.{digits[-1]}"
        pairs.setdefault(torch, set()).add(found["xformers"])
    return pairs


def compatibility_problems(resolution: Resolution, *, runtime: ColabRuntime | None = None) -> list[str]:
    """What is wrong with a resolution beyond what pip checks, one sentence each (empty: nothing)."""
    problems = []
    torch = resolution.version("torch") or (runtime.version("torch") if runtime else None)
    if "unsloth" in resolution.packages:
        xformers = resolution.version("xformers")
        pairs = unsloth_xformers_pins(resolution.packages["unsloth"]["requires_dist"])
        wanted = pairs.get(Version(torch).base_version, set()) if torch else set()
        if not wanted:
            problems.append(f"{resolution.label}: unsloth {resolution.version('unsloth')} names no xformers build "
                            f"for torch {torch} (it does for {', '.join(sorted(pairs, key=Version))})")
        elif xformers not in wanted:
            problems.append(f"{resolution.label}: xformers {xformers} with torch {torch}; unsloth pairs that torch "
                            f"with xformers {' or '.join(sorted(wanted))}")
    if "vllm" in resolution.packages:
        pinned = [r for r in map(Requirement, resolution.packages["vllm"]["requires_dist"])
                  if r.name == "torch" and r.marker is None]
        if pinned and torch not in pinned[0].specifier:
            problems.append(f"{resolution.label}: vllm pins torch{pinned[0].specifier}, resolved {torch}")
    if runtime is not None:
        upgrades = {canonicalize_name(n) for n in UPGRADES}
        for name, entry in sorted(resolution.packages.items()):
            had = runtime.packages.get(name)
            if had is not None and had != entry["version"] and name not in upgrades:
                problems.append(f"{resolution.label}: would change Colab's {entry['name']} {had} -> "
                                f"{entry['version']} (not one of the upgrades: {', '.join(sorted(UPGRADES))})")
        for name in sorted(upgrades):
            if resolution.version(name) in (None, runtime.packages.get(name)):
                problems.append(f"{resolution.label}: {name} is listed as upgraded but keeps Colab's version: take "
                                "it out of UPGRADES")
    return problems


def cuda_major(torch_version: str, requires_dist: Iterable[str] = ()) -> str | None:
    """The CUDA major version of a torch build: from its local version (``2.11.0+cu128`` -> ``12``) or, for a PyPI
    build, from the CUDA packages it requires (``nvidia-cuda-runtime-cu12``, ``cuda-toolkit==13.0.2``)."""
    local = re.search(r"\+cu(\d+)\d$", torch_version)
    if local:
        return local.group(1)
    for line in requires_dist:
        requirement = Requirement(line)
        suffix = re.search(r"-cu(\d+)$", requirement.name)
        if requirement.name.startswith("nvidia-") and suffix:
            return suffix.group(1)
        if requirement.name == "cuda-toolkit":
            pinned = [s.version for s in requirement.specifier if s.operator == "=="]
            if pinned:
                return pinned[0].split(".")[0]
    return None


def vllm_cuda_problems(vllm: Resolution, runtime: ColabRuntime) -> list[str]:
    """vLLM's torch must be built for the CUDA major version of Colab's torch, so that Colab's driver runs it."""
    entry = vllm.packages.get("torch")
    colab_torch = runtime.version("torch")
    if entry is None or colab_torch is None:
        return [f"{vllm.label}: no torch resolved, or none in Colab's runtime"]
    ours, colabs = cuda_major(entry["version"], entry["requires_dist"]), cuda_major(colab_torch)
    if ours is None or ours != colabs:
        return [f"{vllm.label}: torch {entry['version']} is a CUDA {ours} build; Colab's torch {colab_torch} is CUDA "
                f"{colabs}, which is what Colab's driver is certain to run"]
    return []


def lock_entries(resolution: Resolution, runtime: ColabRuntime | None = None) -> dict[str, str]:
    """The resolved packages to pin: all of them, or with ``runtime`` those whose version Colab does not have."""
    return {entry["name"]: entry["version"] for name, entry in sorted(resolution.packages.items())
            if runtime is None or runtime.packages.get(name) != entry["version"]}


# --------------------------------------------------------------------------------------------------------------
# Writing the locks


def colab_lock_text(resolution: Resolution, runtime: ColabRuntime) -> str:
    entries = lock_entries(resolution, runtime)
    upgraded = [f"#   {name} {runtime.packages[name]} -> {resolution.version(name)}: {reason}"
                for name, reason in sorted(UPGRADES.items())]
    header = [
        "# Generated by `python -m tools.colab_lock --write`: do not edit by hand.",
        "# What the Colab install (colab/install.py) adds to Colab's own Python, on top of what Colab",
        "# ships; every other installed package is held at its version by a pip constraint during the install.",
        f"# Resolved with pip's dry run (binary wheels, Python {resolution.python}) against Colab's GPU runtime:",
        f"#   {runtime.describe()}",
        f"#   ({runtime.source})",
        "# Colab packages moved to another version:",
        *upgraded,
        f"# Kept at Colab's version although ec2er asks for more (Colab's Jupyter front end): "
        f"{', '.join(f'{n} {runtime.version(n)}' for n in COLAB_PROVIDES)}.",
        runtime.runtime_line(),
    ]
    return "\n".join(header + [f"{name}=={version}" for name, version in entries.items()]) + "\n"


def vllm_lock_text(resolution: Resolution) -> str:
    header = [
        "# Generated by `python -m tools.colab_lock --write`: do not edit by hand.",
        f"# vLLM's own virtual environment ({VLLM_REQUIREMENT} and everything it needs); the launcher creates it",
        "# (colab.runtime.ensure_vllm_venv) and runs `vllm serve` from it, so vLLM's torch pin never meets the",
        "# torch that Unsloth trains with.",
        f"# Resolved with pip's dry run (binary wheels, Python {resolution.python}, manylinux up to glibc 2.35), as",
        f"# PyPI had the packages on {VLLM_RESOLVED_AS_OF[:10]}, the day after {VLLM_REQUIREMENT} was released.",
    ]
    return "\n".join(header + [f"{n}=={v}" for n, v in lock_entries(resolution).items()]) + "\n"


def resolve_all(runtime: ColabRuntime, python: str) -> tuple[Resolution, Resolution]:
    """The Colab set and the vLLM venv, resolved side by side (both mostly wait for PyPI)."""
    with ThreadPoolExecutor(2) as pool:
        colab = pool.submit(resolve_colab, runtime, python)
        vllm = pool.submit(resolve_vllm, python)
        return colab.result(), vllm.result()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write", action="store_true", help="rewrite requirements/colab-gpu.txt and colab-vllm.txt")
    args = parser.parse_args(argv)
    python = python313()
    if python is None:
        print("no Python 3.13 found (python3.13 on PATH, a pyenv install or $EC2ER_PYTHON313): pip evaluates "
              "markers for the interpreter it runs in, so the Colab locks need one", file=sys.stderr)
        return 2
    runtime = load_colab_runtime()
    colab, vllm = resolve_all(runtime, python)
    problems = (compatibility_problems(colab, runtime=runtime) + compatibility_problems(vllm)
                + vllm_cuda_problems(vllm, runtime))
    for resolution in (colab, vllm):
        print(f"{resolution.label}: {len(resolution.packages)} packages resolved in {resolution.seconds:.0f}s")
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 1
    for path, text in ((COLAB_LOCK, colab_lock_text(colab, runtime)), (VLLM_LOCK, vllm_lock_text(vllm))):
        old = path.read_text(encoding="utf-8") if path.is_file() else ""
        state = "unchanged" if old == text else "changed"
        if args.write and old != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            state = "written"
        print(f"{path.relative_to(REPO_ROOT)}: {state} ({len(parse_lock(text))} pins)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
