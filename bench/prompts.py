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
    rng = random.Random(seed)
    texts: list[str] = []
    seen: set[str] = set()
    while len(texts) < count:
        target = rng.randint(min_tokens, max_tokens)
        words = _words(rng)
        words[0] = words[0].capitalize()
        while count_tokens(" ".join(words)) < target:
            words += [rng.choice(LINKS), *_words(rng)]
        while len(words) > 1 and count_tokens(" ".join(words)) > target:
            words.pop()
        text = " ".join(words)
        n = count_tokens(text)
        if text not in seen and min_tokens <= n <= max_tokens:
            seen.add(text)
            texts.append(text)
    return texts


def split_pair(text: str) -> Pair:
    """``(prompt, completion)`` for ``logprob_of``: the last one to three words complete it.

    The completion keeps its leading space, so it tokenizes to at least one
    token of its own and never merges into the prompt's last token.
    """
    words = text.split(" ")
    n = 1 + len(text) % 3
    n = min(n, len(words) - 1)
    return " ".join(words[:-n]), " " + " ".join(words[-n:])
