"""``generate``: a simulated model call, so demos and benchmarks have an LLM-shaped latency.

No model runs; only the latency shape of a streamed response does, and the result says so.
"""

from __future__ import annotations

import hashlib
from typing import Any

import anyio

from .registry import tool

# -- simulated model call -----------------------------------------------------------------
_WORDS: tuple[str, ...] = tuple(
    [
        "lane",
        "batch",
        "tool",
        "queue",
        "worker",
        "slot",
        "trace",
        "core",
        "wait",
        "cpu",
        "agent",
        "call",
        "result",
        "file",
        "token",
        "model",
        "parse",
        "read",
        "grep",
        "hash",
        "latency",
        "budget",
        "priority",
        "timeline",
        "phase",
        "segment",
        "sample",
        "loop",
        "thread",
    ]
)
_CHUNK_TOKENS = 16  # a streamed response arrives in chunks, not one wake-up per token


@tool
async def generate(
    prompt: str, tokens: int = 256, ttft_s: float = 0.3, per_token_s: float = 0.004
) -> dict[str, Any]:
    """A SIMULATED LLM call: no model runs, only its latency shape — ``ttft_s`` to the first token,
    then ``per_token_s`` per token, all waiting (``anyio.sleep``), as a remote model looks to the
    caller. The text is deterministic words derived from the prompt, and the result says
    ``"simulated": True`` so it is never mistaken for model output.
    """
    if tokens < 0 or ttft_s < 0 or per_token_s < 0:
        raise ValueError("generate: tokens, ttft_s and per_token_s must be >= 0")
    seed = hashlib.sha256(prompt.encode("utf-8")).digest()
    start = anyio.current_time()
    await anyio.sleep(ttft_s)
    words: list[str] = []
    for i in range(tokens):
        words.append(_WORDS[(seed[i % len(seed)] + i) % len(_WORDS)])
        if (i + 1) % _CHUNK_TOKENS == 0 or i + 1 == tokens:
            # Sleep to an absolute deadline so rounding in each sleep does not accumulate.
            due = start + ttft_s + (i + 1) * per_token_s
            await anyio.sleep(max(0.0, due - anyio.current_time()))
    return {"simulated": True, "text": " ".join(words), "tokens": tokens}
