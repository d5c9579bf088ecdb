"""The LaMP benchmark: task specs, data loading and download, official metrics, methods, harness.

- :mod:`~langchain_rpo.lamp.tasks`: one :class:`~langchain_rpo.lamp.tasks.TaskSpec` per task.
- :mod:`~langchain_rpo.lamp.data`: streaming, validating readers (and the output writer).
- :mod:`~langchain_rpo.lamp.metrics`: accuracy/F1, MAE/RMSE, ROUGE-1/L as LaMP scores them.
- :mod:`~langchain_rpo.lamp.download`: resumable, atomic download of the official files.
- :mod:`~langchain_rpo.lamp.methods`: zero, rag, rpo, rpo-k0, rpo-base, nearest.
- :mod:`~langchain_rpo.lamp.harness`: ``rpo eval``.
- :mod:`~langchain_rpo.lamp.combined`: ``rpo eval`` on several sets, one combined report.
- :mod:`~langchain_rpo.lamp.bootstrap`: per-question scores and the paired bootstrap of a gain.
- :mod:`~langchain_rpo.lamp.score`: ``rpo lamp score``.
- :mod:`~langchain_rpo.lamp.report`: the markdown table and the bar chart.
- :mod:`~langchain_rpo.lamp.sets`: the sets bundled with the package, or named by folder
  (``rpo eval --set``).
- :mod:`~langchain_rpo.lamp.extras`: optional packages, imported where used, naming their extra.

Importing this package needs none of the ``eval`` extra's packages: each is imported where it is
used, with an error that names ``pip install "langchain-rpo[eval]"``.
"""

from langchain_rpo.lamp.data import LampDataError, Question, iter_questions, read_outputs
from langchain_rpo.lamp.metrics import evaluate
from langchain_rpo.lamp.tasks import TASKS, TaskSpec, get_task

__all__ = [
    "TASKS",
    "TaskSpec",
    "get_task",
    "LampDataError",
    "Question",
    "iter_questions",
    "read_outputs",
    "evaluate",
]
