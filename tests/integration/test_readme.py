"""The README's quickstart runs as written (with the real offline models)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from langchain_core.messages import AIMessage

pytestmark = pytest.mark.integration
README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_quickstart_runs_as_written() -> None:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Quickstart", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)
    namespace: dict = {}
    exec(compile(code, "README.md#quickstart", "exec"), namespace)  # noqa: S102
    answer = namespace["answer"]
    assert isinstance(answer, AIMessage) and answer.content
    assert answer.response_metadata["rpo"]["user_id"] == "alice"
