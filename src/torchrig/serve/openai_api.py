"""The OpenAI request and response shapes torchrig serves (the parts a small local model can
honour), so the `openai` client and curl scripts work unchanged.

    POST /v1/completions        prompt (a string, or a list of one), max_tokens (default
                                16, as OpenAI), temperature, top_p, stop, seed, stream
    POST /v1/chat/completions   messages [{role, content}], max_tokens or
                                max_completion_tokens (default: the rest of the context,
                                capped by the server's limit), same sampling fields

Unknown fields are ignored (clients send many: user, presence_penalty, ...); n other than
1, logprobs and tools are refused with 400 rather than silently ignored. Streaming answers
are server-sent events: `data: {chunk}` lines, then `data: [DONE]`.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_STOPS = 4  # OpenAI's limit


class _Sampling(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool = False
    n: int = Field(1, ge=1, le=1, description="one answer per request")
    logprobs: Any = None
    tools: Any = None

    def stops(self) -> tuple[str, ...]:
        stops = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        return tuple(s for s in stops if s)


class CompletionRequest(_Sampling):
    prompt: str | list[str]
    max_tokens: int | None = Field(16, ge=1)
    echo: bool = False

    def prompt_text(self) -> str:
        if isinstance(self.prompt, str):
            return self.prompt
        if len(self.prompt) != 1:
            raise ValueError("prompt must be a string or a list of exactly one string")
        return self.prompt[0]


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "user", "assistant", "developer"]
    content: str


class ChatRequest(_Sampling):
    messages: list[Message] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)

    def wanted_tokens(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


def chat_prompt(tokenizer: Any, messages: list[Message]) -> list[int]:
    """Token ids of a chat: the tokenizer's chat template when it has one; otherwise the
    messages' contents one after another, which is how the causal-LM recipe's SFT data
    trains (a prompt followed directly by its response)."""
    plain = [{"role": m.role, "content": m.content} for m in messages]
    if getattr(tokenizer, "chat_template", None):
        ids = tokenizer.apply_chat_template(plain, add_generation_prompt=True, tokenize=True)
        if isinstance(ids, dict):
            ids = ids["input_ids"]
        return [int(i) for i in ids]
    text = "".join(m.content for m in messages)
    return [int(i) for i in tokenizer(text)["input_ids"]]


def _ids(prefix: str) -> tuple[str, int]:
    return f"{prefix}-{uuid.uuid4().hex[:24]}", int(time.time())


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def completion(model: str, text: str, finish: str, used: dict[str, int]) -> dict[str, Any]:
    ident, created = _ids("cmpl")
    return {
        "id": ident,
        "object": "text_completion",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish}],
        "usage": used,
    }


def chat_completion(model: str, text: str, finish: str, used: dict[str, int]) -> dict[str, Any]:
    ident, created = _ids("chatcmpl")
    return {
        "id": ident,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": None,
                "finish_reason": finish,
            }
        ],
        "usage": used,
    }


class ChunkMaker:
    """The chunks of one streamed answer (same id and timestamp on each)."""

    def __init__(self, model: str, chat: bool) -> None:
        self.chat = chat
        self.model = model
        self.id, self.created = _ids("chatcmpl" if chat else "cmpl")

    def _wrap(self, choice: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion.chunk" if self.chat else "text_completion",
            "created": self.created,
            "model": self.model,
            "choices": [choice],
        }

    def first(self) -> dict[str, Any] | None:
        if not self.chat:
            return None
        delta = {"role": "assistant", "content": ""}
        return self._wrap({"index": 0, "delta": delta, "finish_reason": None})

    def piece(self, text: str) -> dict[str, Any]:
        if self.chat:
            return self._wrap({"index": 0, "delta": {"content": text}, "finish_reason": None})
        return self._wrap({"index": 0, "text": text, "logprobs": None, "finish_reason": None})

    def last(self, finish: str, used: dict[str, int]) -> dict[str, Any]:
        if self.chat:
            chunk = self._wrap({"index": 0, "delta": {}, "finish_reason": finish})
        else:
            chunk = self._wrap({"index": 0, "text": "", "logprobs": None, "finish_reason": finish})
        chunk["usage"] = used
        return chunk
