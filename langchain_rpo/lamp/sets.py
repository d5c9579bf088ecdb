"""The LaMP-format sets that ship with the package, by the short name ``rpo eval --set`` takes.

One table, :data:`SETS`: a set adds one entry (its name, task, description and folder), and
``rpo eval --set NAME`` and its help list it with no other change.

>>> questions, outputs = get_set("pep").files("dev")
>>> questions.name, outputs.name
('dev_questions.json', 'dev_outputs.json')
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from langchain_rpo.data import pep_titles_dir

__all__ = ["SETS", "BundledSet", "get_set"]


@dataclass(frozen=True)
class BundledSet:
    """A LaMP-format set inside the package.

    Attributes:
        name: The short name (``rpo eval --set pep``).
        task: The LaMP task whose format it has.
        description: One line for the help.
        folder: Returns the folder of its ``{split}_questions.json`` / ``{split}_outputs.json``.
        splits: The splits it has.
    """

    name: str
    task: str
    description: str
    folder: Callable[[], Path]
    splits: tuple[str, ...] = ("train", "dev")

    def files(self, split: str) -> tuple[Path, Path]:
        """Return the split's questions and outputs files.

        Raises:
            ValueError: For a split the set does not have.
        """
        if split not in self.splits:
            raise ValueError(
                f"the {self.name} set has no {split!r} split; choose from {', '.join(self.splits)}"
            )
        folder = self.folder()
        return folder / f"{split}_questions.json", folder / f"{split}_outputs.json"


#: The bundled sets by name.
SETS: dict[str, BundledSet] = {
    "pep": BundledSet(
        name="pep",
        task="LaMP_5",
        description="PEP abstracts -> the titles their authors gave them (129 dev questions)",
        folder=pep_titles_dir,
    ),
}


def get_set(name: str) -> BundledSet:
    """Return the bundled set called ``name``.

    Raises:
        ValueError: For an unknown name, listing the known ones.
    """
    try:
        return SETS[name]
    except KeyError:
        raise ValueError(f"no bundled set called {name!r}; choose from {', '.join(SETS)}") from None
