"""Deterministic English-like texts of mixed token lengths for the benchmark.

Every text is distinct because sway's in-process backend caches results by
prompt: a repeated prompt would time a dictionary lookup, not a forward pass.
Lengths are drawn uniformly from a token range as counted by the model's own
tokenizer, so every variant sees the same spread of sequence lengths and the
batched path really has to pad.
"""

from __future__ import annotations

import random
from collections.abc import Callable

DETERMINERS = ("the", "a", "one", "every", "that", "this", "some", "no")
ADJECTIVES = (
    "old", "quiet", "green", "bright", "cold", "small", "heavy", "warm", "late", "strange",
    "careful", "distant", "narrow", "golden", "tired", "patient", "silver", "sudden",
)  # fmt: skip
NOUNS = (
    "river", "mill", "keeper", "lantern", "library", "baker", "harbour", "bridge", "market",
    "window", "farmer", "gull", "lighthouse", "book", "street", "apple", "teacher", "storm",
    "boat", "garden", "village", "letter", "tower", "clock", "sailor", "road", "winter",
)  # fmt: skip
VERBS = (
    "walks past", "watches", "carries", "remembers", "counts", "follows", "sings about",
    "waits for", "finds", "reads to", "builds", "opens", "forgets", "listens to", "paints",
)  # fmt: skip
LINKS = ("and", "while", "because", "until", "but", "so", "after", "before")

Pair = tuple[str, str]


def _words(rng: random.Random) -> list[str]:
    """One clause: determiner, adjective, noun, verb, object."""
    clause = (
        f"{rng.choice(DETERMINERS)} {rng.choice(ADJECTIVES)} {rng.choice(NOUNS)} "
        f"{rng.choice(VERBS)} the {rng.choice(ADJECTIVES)} {rng.choice(NOUNS)}"
    )
    return clause.split()


def make_texts(
    count: int,
    count_tokens: Callable[[str], int],
    *,
    seed: int,
    min_tokens: int = 8,
    max_tokens: int = 40,
) -> list[str]:
    """``count`` distinct texts, each ``min_tokens``..``max_tokens`` tokens long."""
    pool = TextPool(count_tokens, seed=seed)
    return pool.take(count, min_tokens, max_tokens)


class TextPool:
    """Hands out texts never handed out before, of any requested length range.

    One pool serves every sweep on one model, so no text is scored twice by
    the same side (sway's LRU and the host's cache must both miss), even
    when two sweeps ask for overlapping lengths. Deterministic: the same
    calls in the same order give the same texts.
    """

    def __init__(self, count_tokens: Callable[[str], int], *, seed: int) -> None:
        self._count = count_tokens
        self._rng = random.Random(seed)
        self._seen: set[str] = set()

    def take(self, count: int, min_tokens: int = 8, max_tokens: int = 40) -> list[str]:
        """``count`` fresh texts, each ``min_tokens``..``max_tokens`` tokens long."""
        texts: list[str] = []
        while len(texts) < count:
            text = self._one(self._rng.randint(min_tokens, max_tokens))
            n = self._count(text)
            if text not in self._seen and min_tokens <= n <= max_tokens:
                self._seen.add(text)
                texts.append(text)
        return texts

    def _one(self, target: int) -> str:
        """Clauses up to ``target`` tokens, then words dropped until it fits."""
        rng, count = self._rng, self._count
        words = _words(rng)
        words[0] = words[0].capitalize()
        while count(" ".join(words)) < target:
            words += [rng.choice(LINKS), *_words(rng)]
        while len(words) > 1 and count(" ".join(words)) > target:
            words.pop()
        return " ".join(words)


def split_pair(text: str) -> Pair:
    """``(prompt, completion)`` for ``logprob_of``: the last one to three words complete it.

    The completion keeps its leading space, so it tokenizes to at least one
    token of its own and never merges into the prompt's last token.
    """
    words = text.split(" ")
    n = 1 + len(text) % 3
    n = min(n, len(words) - 1)
    return " ".join(words[:-n]), " " + " ".join(words[-n:])
