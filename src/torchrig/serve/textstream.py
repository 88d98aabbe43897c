"""Generated token ids → text, in pieces safe to send as they come.

Two things are held back until they are settled: a trailing U+FFFD (a byte-level BPE token
can end in the middle of a UTF-8 character; the next token completes it) and a tail that
could be the start of a stop string (sent if the stop string does not follow, dropped if it
does). The text up to the first stop string is the answer; the stop string is not part of it
(OpenAI's behaviour). Each push decodes all ids so far: O(n²) in the answer length, which is
negligible next to a forward pass for the lengths a request may ask for.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class TextStream:
    def __init__(self, tokenizer: Any, stops: Sequence[str] = ()) -> None:
        self._tok = tokenizer
        self._stops = [s for s in stops if s]
        self._ids: list[int] = []
        self._sent = 0  # characters of the decoded text already handed out
        self.text = ""  # the answer so far (final once stopped or flushed)
        self.stopped = False

    def push(self, token: int) -> str:
        """Add a token; return the new text that is safe to send (possibly "")."""
        self._ids.append(token)
        text = str(self._tok.decode(self._ids, skip_special_tokens=True))
        cut = min((i for s in self._stops if (i := text.find(s)) >= 0), default=-1)
        if cut >= 0:
            self.stopped = True
            delta = text[self._sent : cut] if cut > self._sent else ""
            self._sent = max(self._sent, cut)
            self.text = text[:cut]
            return delta
        safe = len(text)
        if text.endswith("\ufffd"):
            safe -= 1
        hold = max(
            (k for s in self._stops for k in range(1, len(s)) if text[:safe].endswith(s[:k])),
            default=0,
        )
        safe -= hold
        self.text = text
        if safe <= self._sent:
            return ""
        delta = text[self._sent : safe]
        self._sent = safe
        return delta

    def flush(self) -> str:
        """The text still held back, at the end of generation."""
        if self.stopped:
            return ""
        delta = self.text[self._sent :]
        self._sent = len(self.text)
        return delta
