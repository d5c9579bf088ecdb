"""Integrations with other frameworks, each behind its own optional extra.

- :mod:`langchain_rpo.integrations.llamaindex`: :class:`RPOQueryEngine`, a LlamaIndex query
  engine that personalizes any other query engine's answers
  (``pip install "langchain-rpo[llamaindex]"``).

Nothing here is imported by ``langchain_rpo`` itself, so the base package never needs them.
"""
