"""Memorization measured: the exposure of canary sentences in a model (Carlini et al. 2019).

"The Secret Sharer" (Carlini, Liu, Erlingsson, Kos, Song, USENIX Security 2019) plants *canaries*
— sentences of a fixed format whose secret slot is filled at random from a randomness space R —
in the training data, and asks how much more likely the trained model finds the planted canary
than the other candidates of R. With candidates ranked by the model's log-perplexity (rank 1 =
most likely), the canary's *exposure* is

    exposure = log2 |R| - log2 rank.

A model that learned nothing of the canary ranks it at random (exposure 1 bit at the median rank,
1/ln 2 ≈ 1.44 bits on average); one that memorized it ranks it first (log2 |R|, the maximum).

Here a canary is ``prefix words + secret words``; every word is a single piece of the tokenizer,
so the model can learn it and the space is ``R = W^S`` for a candidate list of W words and S
secret words. The rank is computed **exactly, by enumerating all of R** with the numpy model the
devices run (``keyboard.lm``): the log-perplexity of each candidate's secret slot given the prefix
(the prefix's own term is the same for every candidate, so it cancels in the rank). A tie counts as
half a place (the expected rank when ties are broken at random).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.errors import FedkbError
from tokenizer.specials import BOS_ID, WORD_START
from tokenizer.words import words as words_of

RESULT_FILE = "audit.json"  # in <home>/server/, for `fedkb report`, and in the audit's work folder
MAX_ENUMERATED_ROWS = 1 << 17  # W^(S-1) model outputs of V logits each; beyond this enumeration is too slow


class AuditError(FedkbError, ValueError):
    """An audit that cannot be set up as asked; the message says what and why."""


def exposure(rank: float, space: int) -> float:
    """``log2 |R| - log2 rank``: 0 for the least likely candidate, ``log2 |R|`` for the most likely."""
    if not 1 <= rank <= space:
        raise ValueError(f"rank must be in 1..{space} (the size of the space), got {rank}")
    return math.log2(space) - math.log2(rank)


def rank_of(canary_score: float, scores: np.ndarray) -> float:
    """The canary's rank (1 = most likely) among ``scores``, which include the canary's own.

    1 + the candidates with a strictly lower log-perplexity, + half of the others that tie with
    it: the expected rank when ties are broken at random (a model that scores every candidate
    alike ranks the canary in the middle, not first).
    """
    scores = np.asarray(scores)
    ties = int(np.count_nonzero(scores == canary_score)) - 1
    return 1 + int(np.count_nonzero(scores < canary_score)) + ties / 2


def candidate_words(tokenizer, count: int) -> list[int]:
    """Piece ids of the first ``count`` pieces that are whole words on their own.

    SentencePiece orders a unigram model's pieces by score, so these are the vocabulary's most
    likely words. A piece qualifies when it is ``▁word`` for a word as ``tokenizer/words.py``
    reads it and the tokenizer encodes that word to exactly this piece.
    """
    ids = []
    for piece_id in range(tokenizer.vocab_size):
        piece = tokenizer.piece(piece_id)
        word = piece[len(WORD_START):]
        if piece.startswith(WORD_START) and words_of(word) == [word] and tokenizer.encode(word) == [piece_id]:
            ids.append(piece_id)
            if len(ids) == count:
                break
    return ids


@dataclass(frozen=True)
class Canary:
    """A planted sentence: its format's prefix and the secret drawn from the space."""

    prefix: tuple[str, ...]
    secret: tuple[str, ...]

    @property
    def text(self) -> str:
        return " ".join(self.prefix + self.secret)


def draw_canaries(tokenizer, word_ids: Sequence[int], count: int, *, prefix_words: int, secret_words: int,
                  rng: np.random.Generator) -> list[Canary]:
    """``count`` canaries of distinct prefixes, every word drawn uniformly from ``word_ids``."""
    vocab = [tokenizer.piece(i)[len(WORD_START):] for i in word_ids]
    canaries: list[Canary] = []
    prefixes: set[tuple[str, ...]] = set()
    while len(canaries) < count:
        drawn = [vocab[i] for i in rng.integers(0, len(vocab), prefix_words + secret_words)]
        prefix, secret = tuple(drawn[:prefix_words]), tuple(drawn[prefix_words:])
        if prefix in prefixes:
            continue
        prefixes.add(prefix)
        canaries.append(Canary(prefix, secret))
    return canaries


def space_size(words: int, secret_words: int) -> int:
    return words ** secret_words


def check_enumerable(words: int, secret_words: int) -> None:
    """Refuses a space whose exact enumeration would take too long, saying what to lower."""
    if words < 2 or secret_words < 1:
        raise AuditError("the randomness space needs at least 2 words and 1 secret word, "
                         f"got {words} and {secret_words}")
    rows = words ** (secret_words - 1)
    if rows > MAX_ENUMERATED_ROWS:
        raise AuditError(f"{words} candidate words and {secret_words} secret words need {rows:,} model outputs per "
                         f"canary (at most {MAX_ENUMERATED_ROWS:,}); lower --space or --secret-words")


def secret_scores(lm, prefix_ids: Sequence[int], word_ids: Sequence[int], secret_words: int,
                  chunk: int = 4096) -> np.ndarray:
    """Log-perplexity ``-log p(secret | <s> prefix)`` of every candidate of ``W^S``, flattened.

    Candidate ``(w_1, …, w_S)`` sits at index ``Σ i_k W^(S-k)`` (row-major over the word list).
    The LSTM runs once over the prefix; each further level feeds every word to every state.
    """
    word_ids = np.asarray(word_ids, np.int64)
    state = lm.zero_state(1)
    for token in [BOS_ID, *prefix_ids]:
        state = lm.cell(np.array([token]), state)
    scores = np.zeros(1, np.float64)
    for level in range(secret_words):
        last = level == secret_words - 1
        next_scores, next_h, next_c = [], [], []
        for start in range(0, len(scores), chunk):
            h, c = state[0][start : start + chunk], state[1][start : start + chunk]
            logp = lm.log_probs(h)[:, word_ids]  # [rows, W]
            next_scores.append((scores[start : start + chunk, None] - logp).reshape(-1))
            if not last:
                rows = len(h)
                fed = lm.cell(np.tile(word_ids, rows), (np.repeat(h, len(word_ids), 0), np.repeat(c, len(word_ids), 0)))
                next_h.append(fed[0])
                next_c.append(fed[1])
        scores = np.concatenate(next_scores)
        if not last:
            state = (np.concatenate(next_h), np.concatenate(next_c))
    return scores


def canary_exposure(lm, tokenizer, canary: Canary, word_ids: Sequence[int]) -> dict:
    """The canary's rank among all ``W^S`` candidates and its exposure, under ``lm``."""
    vocab = {tokenizer.piece(i)[len(WORD_START):]: k for k, i in enumerate(word_ids)}
    try:
        index = 0
        for w in canary.secret:
            index = index * len(word_ids) + vocab[w]
    except KeyError as exc:
        raise AuditError(f"canary {canary.text!r}: secret word {exc.args[0]!r} "
                         "is not among the candidate words") from None
    prefix_ids = tokenizer.encode(" ".join(canary.prefix))
    scores = secret_scores(lm, prefix_ids, word_ids, len(canary.secret))
    rank = rank_of(scores[index], scores)
    return {"rank": rank, "space": len(scores), "exposure": exposure(rank, len(scores)),
            "log_perplexity": float(scores[index]), "median_log_perplexity": float(np.median(scores))}


def summary_table(result: dict) -> list[tuple[str, ...]]:
    """Rows ``(run, version, round, exposure per canary…, mean, mean of the controls)`` of an audit result."""
    rows = []
    for arm in result["runs"]:
        for v in arm["versions"]:
            control = v.get("mean_control_exposure")
            rows.append((arm["name"], v["version"], str(v["round"]),
                         *(f"{e:.1f}" for e in v["exposures"]), f"{v['mean_exposure']:.1f}",
                         "-" if control is None else f"{control:.1f}"))
    return rows


def render_terminal(result: dict, console) -> None:
    """The exposure table of an audit result and what it was measured on (``fedkb audit``, ``fedkb report``)."""
    from rich.table import Table

    n = len(result["canaries"])
    table = Table(title=f"Canary exposure (bits; max {result['max_exposure']:.1f} = log2 {result['space']:,}, "
                        f"about 1.4 on average for a model that learned nothing of the canary)")
    for col in ("run", "version", "round", *(f"c{i + 1}" for i in range(n)), "mean", "control"):
        table.add_column(col, justify="left" if col == "run" else "right")
    for row in summary_table(result):
        table.add_row(*row)
    console.print(table)
    for i, c in enumerate(result["canaries"]):
        console.print(f"  c{i + 1}: {c['text']!r} (secret {c['secret']!r}) × {result['config']['repeats']} on "
                      f"{len(c['devices'])} device(s)")
    if result.get("controls"):
        console.print(f"  control: the mean exposure of {len(result['controls'])} canaries "
                      "drawn the same way and planted nowhere (what the model gives a canary from the language alone)")
    for run in result["runs"]:
        last = run["versions"][-1] if run["versions"] else {}
        eps = (last.get("privacy") or {}).get("epsilon")
        loss = last.get("loss")
        console.print(f"  {run['name']}: rounds with a canary's device: {run['rounds_with_canary_device']}"
                      + (f"; final training loss {loss:.3f}" if loss is not None else "")
                      + (f"; ε = {eps:.2f} at δ = {last['privacy']['delta']:.2g}" if eps is not None else ""))
    console.print(f"  {result['population']} devices, {result['rounds']} rounds, "
                  f"{result['train']['clients_per_round']} clients per round, "
                  f"preset {result['train']['preset']}; {result['method']}")


def load_result(server_dir: Path) -> dict | None:
    """The audit result ``fedkb audit`` left in ``server_dir`` (None if there is none)."""
    path = Path(server_dir) / RESULT_FILE
    if not path.is_file():
        return None
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(result, dict) or not isinstance(result.get("runs"), list):
            raise ValueError("not an audit result (an object with 'runs')")
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise AuditError(f"{path}: unreadable ({exc}); run `fedkb audit` again or remove it") from None
    return result
