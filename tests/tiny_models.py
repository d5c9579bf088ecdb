"""Tiny random models built in-process: a tokenizer trained here and a 2-layer Llama.

Deterministic and a few seconds at most, so unit tests run real ``transformers`` generation
(padding, streaming, LoRA) without any download. :func:`teach` overfits a tiny model to answer
every prompt with one fixed text, so tests can check what a *well-formed* trajectory does.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from langchain_rpo.prompts import build_reflection_messages
from langchain_rpo.reflection import to_chat_dicts
from langchain_rpo.trajectory import Trajectory, render

CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIALS = ["<|pad|>", "<|im_start|>", "<|im_end|>"]

# What the conftest's taught model answers to every reflection prompt (import it from here:
# test modules share this module, while several conftest.py files would shadow each other).
TAUGHT_TRAJECTORY = Trajectory(
    rewrite="Rust 1.76 released", preferences="short titles", gaps="too long"
)

CORPUS = [
    build_reflection_messages("A draft answer.", ["Rust 1.75 released"], "What is new?")[0].content,
    render(TAUGHT_TRAJECTORY),
    "The quick brown fox jumps over the lazy dog. Rust Python PEP release title abstract.",
    "User's past items: Request: Draft answer: (none) 0123456789 .,;:!?'\"()[]{}<>/&-_",
]


def make_tokenizer() -> PreTrainedTokenizerFast:
    """Train a small byte-level BPE tokenizer with a ChatML chat template."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<|pad|>", eos_token="<|im_end|>", bos_token="<|im_start|>"
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def make_model(tokenizer: PreTrainedTokenizerFast, seed: int = 0) -> LlamaForCausalLM:
    """A 2-layer, 32-wide random Llama sized for ``tokenizer``."""
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
        tie_word_embeddings=True,
    )
    return LlamaForCausalLM(config).eval()


def teach(
    model: LlamaForCausalLM,
    tokenizer: PreTrainedTokenizerFast,
    conversations: Sequence[Sequence],
    answer: str,
    steps: int = 120,
) -> LlamaForCausalLM:
    """Overfit ``model`` to answer each conversation with ``answer`` (then eos)."""
    torch.manual_seed(0)
    model.train()
    optim = torch.optim.Adam(model.parameters(), lr=3e-3)
    rows = []
    for messages in conversations:
        prompt = tokenizer.apply_chat_template(
            to_chat_dicts(messages), tokenize=False, add_generation_prompt=True
        )
        p_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        a_ids = tokenizer(answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        rows.append((torch.tensor([p_ids + a_ids]), len(p_ids)))
    for _ in range(steps):
        for ids, n_prompt in rows:
            labels = ids.clone()
            labels[:, :n_prompt] = -100
            loss = model(input_ids=ids, labels=labels).loss
            optim.zero_grad()
            loss.backward()
            optim.step()
    return model.eval()


class PacedTokens:
    """Counts a model's forward calls (one per generated token) at a steady pace of 3 ms each.

    The end-of-sequence token is never chosen, so a generation only ends at its budget, or when
    its caller stops it: tests of timeouts and cancellation read :attr:`count` to see when the
    generation really stopped.
    """

    def __init__(self, model: LlamaForCausalLM) -> None:
        self.count = 0
        model.register_forward_hook(self._hook)

    def _hook(self, module: torch.nn.Module, args: object, output: object) -> None:
        self.count += 1
        time.sleep(0.003)
        output.logits[..., module.config.eos_token_id] = -1e9  # type: ignore[attr-defined]

    def settled(self) -> int:
        """The count once it stopped moving (or after 2 s)."""
        last, deadline = -1, time.monotonic() + 2
        while self.count != last and time.monotonic() < deadline:
            last = self.count
            time.sleep(0.2)
        return self.count
