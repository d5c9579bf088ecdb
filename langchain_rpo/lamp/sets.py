"""The LaMP-format sets that ship with the package, by the short name ``rpo eval --set`` takes.

One table, :data:`SETS`: a set adds one entry (its name, task, description and folder), and
``rpo eval --set NAME`` and its help list it with no other change.

A set outside the package is named by its folder (:func:`parse_sets`): ``--set PATH`` (named
after the folder) or ``--set NAME=PATH``, so data is read where it lives, never copied in.

>>> questions, outputs = get_set("pep").files("dev")
>>> questions.name, outputs.name
('dev_questions.json', 'dev_outputs.json')
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from langchain_rpo.data import pep_titles_dir

__all__ = ["SETS", "BundledSet", "folder_set", "get_set", "parse_sets"]


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


def folder_set(name: str, folder: str | Path) -> BundledSet:
    """A set in a folder outside the package (``{split}_questions.json``/``_outputs.json``).

    Raises:
        ValueError: When the folder does not exist.
    """
    path = Path(folder).expanduser()
    if not path.is_dir():
        raise ValueError(
            f"{folder}: no such folder. Fix: name a folder that holds dev_questions.json and "
            f"dev_outputs.json, or a bundled set ({', '.join(SETS)})."
        )
    return BundledSet(
        name=name,
        task="the outputs file's",
        description=f"LaMP-format files in {path}",
        folder=lambda: path,
    )


def parse_sets(specs: Iterable[str]) -> list[BundledSet]:
    """Read ``--set`` values: comma-separated ``NAME`` (bundled), ``PATH`` or ``NAME=PATH``.

    A ``PATH`` is an existing folder (named after it); a word that is neither a bundled name
    nor a folder is an error naming both forms.

    Raises:
        ValueError: For an unknown name, a missing folder, or two sets of the same name.

    >>> [s.name for s in parse_sets(["pep"])]
    ['pep']
    """
    found: list[BundledSet] = []
    for spec in specs:
        for item in (part.strip() for part in spec.split(",")):
            if not item:
                continue
            name, sep, folder = item.partition("=")
            if sep:
                if not name.strip():
                    raise ValueError(f"--set {item!r}: name the set before '=' (NAME=PATH)")
                found.append(folder_set(name.strip(), folder.strip()))
            elif item in SETS:
                found.append(SETS[item])
            elif Path(item).expanduser().is_dir():
                found.append(folder_set(Path(item).expanduser().resolve().name, item))
            else:
                raise ValueError(
                    f"--set must be one of {', '.join(SETS)}, or a folder of LaMP-format files "
                    f"(PATH or NAME=PATH), got {item!r}"
                )
    names = [s.name for s in found]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"--set names {repeated} twice; give each set its own name with NAME=PATH")
    if not found:
        raise ValueError("--set names no set")
    return found
