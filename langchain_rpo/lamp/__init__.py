"""The LaMP benchmark: task specs, data loading and download, official metrics, methods, harness.

- :mod:`~langchain_rpo.lamp.tasks`: one :class:`~langchain_rpo.lamp.tasks.TaskSpec` per task.
- :mod:`~langchain_rpo.lamp.data`: streaming, validating readers (and the output writer).
- :mod:`~langchain_rpo.lamp.metrics`: accuracy/F1, MAE/RMSE, ROUGE-1/L as LaMP scores them.
- :mod:`~langchain_rpo.lamp.download`: resumable, atomic download of the official files.
- :mod:`~langchain_rpo.lamp.methods`: zero, rag, rpo, rpo-base, nearest.
- :mod:`~langchain_rpo.lamp.harness`: ``rpo eval``.
- :mod:`~langchain_rpo.lamp.score`: ``rpo lamp score``.
- :mod:`~langchain_rpo.lamp.report`: the markdown table and the bar chart.
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
