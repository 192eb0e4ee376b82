"""Builds federated/corpora/shakespeare.jsonl.gz from ../shared/data/shakespeare_by_role.

One record per speech: ``{"user": "<play>::<speaker>", "text": <the speech's lines joined by
spaces>}`` in play order (file order is time order). Inline bracketed stage directions such as
``[Aside.]`` are removed: nobody types them. The output is deterministic (gzip mtime 0).

    uv run python scripts/make_shakespeare_corpus.py [SOURCE_JSONL]
"""

import gzip
import io
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT.parent / "shared" / "data" / "shakespeare_by_role" / "speeches.jsonl"
TARGET = ROOT / "federated" / "corpora" / "shakespeare.jsonl.gz"
_STAGE_DIRECTION = re.compile(r"\[[^\]]*\]")


def main() -> None:
    source = Path(sys.argv[1]) if len(sys.argv) > 1 else SOURCE
    out = io.StringIO()
    kept = 0
    with open(source, encoding="utf-8") as f:
        for line in f:
            speech = json.loads(line)
            text = " ".join(_STAGE_DIRECTION.sub(" ", " ".join(speech["lines"])).split())
            if text:
                out.write(json.dumps({"user": speech["user"], "text": text}, ensure_ascii=False) + "\n")
                kept += 1
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0, compresslevel=9) as gz:
        gz.write(out.getvalue().encode("utf-8"))
    TARGET.write_bytes(buf.getvalue())
    print(f"wrote {kept} speeches to {TARGET} ({TARGET.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
