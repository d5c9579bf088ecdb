"""A pip user's path, from the wheel built from this checkout into a fresh virtual environment.

Not the editable development install: the wheel is built with ``pip wheel``, installed with the
same ``pip`` configuration as ``make install`` (the machine's index settings, ``-c
constraints.txt``), and every command runs outside the checkout, so only what the wheel ships
can be imported. The steps share one environment and run in file order:

1. the wheel's metadata (``py.typed``, version, URLs, classifiers);
2. the base install (no extras): ``rpo --help``, and the quickstart's first call fails at once
   naming the commands that install the offline models;
3. the README's pip commands for the offline models; then ``rpo demo`` and the README
   quickstart run with an empty Hugging Face cache, the quickstart with ``HF_HUB_OFFLINE``
   unset, as a pip user runs it.

Selected by ``-m packaging`` (``make test-wheel``, run by ``.ci/run``); the step timings are
printed at the end of the run.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import tomllib
import venv
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.packaging

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
PACKAGE = PYPROJECT["project"]["name"]
VERSION = PYPROJECT["project"]["version"]
README = (REPO / "README.md").read_text(encoding="utf-8")
# The budget for `rpo --help` on the base install; measured at about 0.7 s.
HELP_SECONDS = 3.0


def _run(
    args: Sequence[str],
    *,
    timeout: float,
    step: str | None = None,
    timings: dict[str, float] | None = None,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command, capturing its output; with ``step``, record its wall time in ``timings``."""
    started = time.perf_counter()
    done = subprocess.run(
        list(args), cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    if step is not None and timings is not None:
        timings[step] = time.perf_counter() - started
    return done


def _ok(done: subprocess.CompletedProcess[str]) -> str:
    """Return stdout, or fail with the command and the end of its output."""
    assert done.returncode == 0, (
        f"`{shlex.join(done.args)}` exited {done.returncode}\n"
        f"--- stdout\n{done.stdout[-4000:]}\n--- stderr\n{done.stderr[-4000:]}"
    )
    return done.stdout


@dataclass
class Venv:
    """A fresh virtual environment, the scratch folder its commands run in, and their timings."""

    root: Path
    workdir: Path
    env: dict[str, str]
    timings: dict[str, float]
    extras_installed: bool = False

    def bin(self, name: str) -> str:
        """The path of an executable in the environment."""
        return str(self.root / "bin" / name)

    def run(
        self,
        args: Sequence[str],
        *,
        timeout: float,
        step: str | None = None,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command in the scratch folder (never the checkout), capturing its output.

        Args:
            args: The command.
            timeout: Seconds before it is killed (and the test fails).
            step: A name to record the wall time under, if any.
            env: Variables that override the environment's for this command.

        Returns:
            The finished process.
        """
        return _run(
            args,
            timeout=timeout,
            step=step,
            timings=self.timings,
            cwd=self.workdir,
            env={**self.env, **(env or {})},
        )


def _readme_pip_commands() -> list[list[str]]:
    """The ``pip install`` lines of the README's pip section, for this wheel instead of PyPI's."""
    section = README.split("## pip install", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.DOTALL)
    assert block, "README.md: the '## pip install' section has no ```bash block"
    commands = [
        shlex.split(line.split("#", 1)[0])
        for line in block.group(1).splitlines()
        if line.strip().startswith("pip install")
    ]
    assert commands, "README.md: the '## pip install' block has no `pip install` line"
    return commands


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory, timings: dict[str, float]) -> Path:
    """The wheel built from the checkout (``pip wheel --no-deps``, as a release would)."""
    out = tmp_path_factory.mktemp("dist")
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out)]
    _ok(_run([*command, str(REPO)], timeout=600, step="wheel build", timings=timings))
    (built,) = out.glob("langchain_rpo-*.whl")
    return built


@pytest.fixture(scope="module")
def env(
    tmp_path_factory: pytest.TempPathFactory, wheel: Path, timings: dict[str, float]
) -> Iterator[Venv]:
    """A fresh venv with the wheel installed without extras (removed afterwards: about 2 GB)."""
    root = tmp_path_factory.mktemp("venv")
    workdir = tmp_path_factory.mktemp("work")
    started = time.perf_counter()
    venv.EnvBuilder(with_pip=True, clear=True).create(root)
    timings["venv create"] = time.perf_counter() - started
    # The machine's pip settings (index, find-links, certificates) come from its config files and
    # PIP_* variables, as for `make install`; nothing of the development venv or the checkout.
    inherited = {
        key: value
        for key, value in os.environ.items()
        if key not in {"VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "HF_ENDPOINT", "HF_HUB_CACHE"}
        and key not in {"TRANSFORMERS_OFFLINE", "HUGGINGFACE_HUB_CACHE", "RPO_CACHE_DIR"}
    }
    hf_home = tmp_path_factory.mktemp("hf-home")  # empty: no hub copy can stand in
    inherited.update(
        VIRTUAL_ENV=str(root),
        PATH=f"{root / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        HF_HOME=str(hf_home),
        HF_HUB_OFFLINE="1",
        RPO_CACHE_DIR=str(tmp_path_factory.mktemp("rpo-cache")),
    )
    environment = Venv(root, workdir, inherited, timings)
    install = [environment.bin("python"), "-m", "pip", "install", "--quiet"]
    install += ["-c", str(REPO / "constraints.txt"), str(wheel)]
    try:
        _ok(environment.run(install, timeout=900, step="base install (-c constraints.txt WHEEL)"))
        yield environment
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_wheel_ships_py_typed_and_its_metadata(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = archive.read(f"langchain_rpo-{VERSION}.dist-info/METADATA").decode()
    assert "langchain_rpo/py.typed" in names
    assert "langchain_rpo/adapters/smollm2-135m-rpo/adapter_config.json" in names
    # The opt-in trajectory adapter ships too, weights and settings.
    for name in ("adapter_model.safetensors", "rpo_settings.json"):
        assert f"langchain_rpo/adapters/smollm2-135m-rpo-trajectory/{name}" in names
    assert "langchain_rpo/data/pep_titles/dev_questions.json" in names
    assert not any(name.startswith(("tests/", "training/", ".venv/")) for name in names)
    assert f"\nVersion: {VERSION}\n" in metadata
    assert "\nLicense-Expression: Apache-2.0\n" in metadata
    for label in ("Documentation", "Source", "Issues"):
        assert f"\nProject-URL: {label}, https://" in metadata, label
    for classifier in ("Typing :: Typed", "Operating System :: OS Independent"):
        assert f"\nClassifier: {classifier}\n" in metadata, classifier


def test_base_install_imports_from_the_wheel_and_reports_its_version(env: Venv) -> None:
    assert not env.extras_installed, "runs before the extras are installed (file order)"
    probe = "import json, langchain_rpo as m; print(json.dumps([m.__version__, m.__file__]))"
    version, location = json.loads(_ok(env.run([env.bin("python"), "-c", probe], timeout=120)))
    assert version == VERSION
    assert Path(location).is_relative_to(env.root), f"imported from {location}, not the wheel"


def test_base_install_runs_rpo_help_quickly(env: Venv, timings: dict[str, float]) -> None:
    assert not env.extras_installed, "runs before the extras are installed (file order)"
    # Best of two: the first start also warms the file cache of a just-installed venv.
    seconds = []
    for _ in range(2):
        started = time.perf_counter()
        help_text = _ok(env.run([env.bin("rpo"), "--help"], timeout=120))
        seconds.append(time.perf_counter() - started)
    timings["rpo --help, base install (best of 2)"] = min(seconds)
    assert "demo" in help_text and "eval" in help_text
    assert min(seconds) < HELP_SECONDS, seconds


def test_base_install_quickstart_fails_at_once_naming_the_install_commands(env: Venv) -> None:
    assert not env.extras_installed, "runs before the extras are installed (file order)"
    from langchain_rpo.assets import CHAT_MODEL_INSTALL_COMMAND, EMBEDDING_INSTALL_COMMAND

    code = (
        "from langchain_rpo import UserHistoryStore\n"
        "UserHistoryStore().add_texts('alice', ['Announcing Rust 1.75.0'])\n"
    )
    step = "quickstart without the offline models (error)"
    done = env.run([env.bin("python"), "-c", code], timeout=120, step=step)
    assert done.returncode != 0
    assert "MissingModelError" in done.stderr, done.stderr[-3000:]
    assert EMBEDDING_INSTALL_COMMAND in done.stderr and CHAT_MODEL_INSTALL_COMMAND in done.stderr


@pytest.fixture(scope="module")
def offline_env(env: Venv, wheel: Path) -> Venv:
    """The same venv after the README's pip commands for the offline models."""
    for command in _readme_pip_commands():
        # The README installs from the package index; this test installs this checkout's wheel.
        args = [
            f"{wheel}{arg.removeprefix(PACKAGE)}" if arg.startswith(f"{PACKAGE}[") else arg
            for arg in command[2:]
        ]
        install = [env.bin("python"), "-m", "pip", "install", "--quiet"]
        install += ["-c", str(REPO / "constraints.txt"), *args]
        _ok(env.run(install, timeout=600, step=f"extras: {shlex.join(command)}"))
    env.extras_installed = True
    return env


def test_rpo_demo_runs_offline_from_the_wheel(offline_env: Venv) -> None:
    demo = [offline_env.bin("rpo"), "demo", "--users", "1"]
    out = _ok(offline_env.run(demo, timeout=900, step="rpo demo --users 1 (+ GGUF conversion)"))
    assert "rewrite :" in out and "ROUGE-L" in out, out[-3000:]


def test_readme_quickstart_runs_offline_from_the_wheel(offline_env: Venv) -> None:
    section = README.split("## Quickstart", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert code, "README.md: the Quickstart section has no ```python block"
    script = offline_env.workdir / "quickstart.py"
    script.write_text(
        code.group(1) + "\nprint('RPO-USER', answer.response_metadata['rpo']['user_id'])\n",
        encoding="utf-8",
    )
    # As a pip user runs it: HF_HUB_OFFLINE unset. The packaged models need no hub; a call that
    # still tried one would fail here or retry for minutes (the test machines have none).
    run = offline_env.run(
        [offline_env.bin("python"), str(script)],
        timeout=900,
        step="README quickstart (HF_HUB_OFFLINE unset)",
        env={"HF_HUB_OFFLINE": ""},
    )
    assert "RPO-USER alice" in _ok(run)
