"""
The King James Bible as a small, offline GPT-2 token dataset (what ships in data/).

Source text: Debian's `bible-kjv` package (program `bible`, text in `bible-kjv-text`;
the KJV text is in the public domain). Install it with

    sudo apt-get install bible-kjv

Tokenizer: the exact GPT-2 byte-level BPE, built with tiktoken offline from the
merge-ranks file `gpt2.tiktoken` of the openai/whisper repository
(`whisper/assets/gpt2.tiktoken`, MIT License, Copyright (c) 2022 OpenAI; the same file
is inside the `openai-whisper` sdist on PyPI, and it is byte-identical to tiktoken's
own `r50k_base.tiktoken`, sha256 306cd27f...dd930). Pass its path with --ranks. Without
--ranks the script falls back to tiktoken.get_encoding("gpt2"), which needs network
access (or a warm tiktoken cache) the first time.

What it does:
1. runs `bible -f "Gen1:1-Rev22:21"`: with -f (pretty-printing off) `bible` prints one
   verse per line as `<BookAbbrev><chapter>:<verse> <text>` and never wraps lines;
   31,102 verses in 66 books.
2. strips the references and builds one document per book: the book's name on the
   first line, a blank line, then one paragraph per chapter (that chapter's verses
   joined by single spaces; runs of whitespace inside a verse collapsed to one space),
   paragraphs separated by a blank line, no trailing newline.
3. tokenizes every document with GPT-2 BPE, each preceded by <|endoftext|> (50256),
   as llm.c does for its datasets.
4. splits by book: the books in VAL_BOOKS (about 6% of the tokens) go to the val
   shard, the other 60 to the train shard, both in canonical (Genesis..Revelation) order.
5. writes data/kjv/kjv_val.bin, data/kjv/kjv_train.bin and data/gpt2_tokenizer.bin,
   then reads them back and checks them (exact text round trips, header fields).

Run from the repository root:

    python dev/data/kjv.py --ranks /path/to/gpt2.tiktoken

The output is deterministic: rerunning gives byte-identical files.
"""

import argparse
import hashlib
import os
import re
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from data_common import (  # noqa: E402
    EOT_ID,
    EOT_TEXT,
    decode_with_table,
    get_gpt2_encoding,
    read_datafile,
    read_tokenizer,
    write_datafile,
    write_tokenizer,
)

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

# the 66 books in the order `bible` prints them: (abbreviation used by `bible -f`, name)
BOOKS = [
    ("Ge", "Genesis"), ("Exo", "Exodus"), ("Lev", "Leviticus"), ("Num", "Numbers"),
    ("Deu", "Deuteronomy"), ("Josh", "Joshua"), ("Jdgs", "Judges"), ("Ruth", "Ruth"),
    ("1Sm", "1 Samuel"), ("2Sm", "2 Samuel"), ("1Ki", "1 Kings"), ("2Ki", "2 Kings"),
    ("1Chr", "1 Chronicles"), ("2Chr", "2 Chronicles"), ("Ezra", "Ezra"), ("Neh", "Nehemiah"),
    ("Est", "Esther"), ("Job", "Job"), ("Psa", "Psalms"), ("Prv", "Proverbs"),
    ("Eccl", "Ecclesiastes"), ("SSol", "Song of Solomon"), ("Isa", "Isaiah"), ("Jer", "Jeremiah"),
    ("Lam", "Lamentations"), ("Eze", "Ezekiel"), ("Dan", "Daniel"), ("Hos", "Hosea"),
    ("Joel", "Joel"), ("Amos", "Amos"), ("Obad", "Obadiah"), ("Jonah", "Jonah"),
    ("Mic", "Micah"), ("Nahum", "Nahum"), ("Hab", "Habakkuk"), ("Zep", "Zephaniah"),
    ("Hag", "Haggai"), ("Zec", "Zechariah"), ("Mal", "Malachi"), ("Mat", "Matthew"),
    ("Mark", "Mark"), ("Luke", "Luke"), ("John", "John"), ("Acts", "Acts"),
    ("Rom", "Romans"), ("1Cor", "1 Corinthians"), ("2Cor", "2 Corinthians"), ("Gal", "Galatians"),
    ("Eph", "Ephesians"), ("Phi", "Philippians"), ("Col", "Colossians"), ("1Th", "1 Thessalonians"),
    ("2Th", "2 Thessalonians"), ("1Tim", "1 Timothy"), ("2Tim", "2 Timothy"), ("Titus", "Titus"),
    ("Phmn", "Philemon"), ("Heb", "Hebrews"), ("Jas", "James"), ("1Pet", "1 Peter"),
    ("2Pet", "2 Peter"), ("1Jn", "1 John"), ("2Jn", "2 John"), ("3Jn", "3 John"),
    ("Jude", "Jude"), ("Rev", "Revelation"),
]
NUM_VERSES = 31102

# Validation books: one of each kind of text, fixed by name so the split is deterministic.
# Ruth (narrative), Ecclesiastes (wisdom), Jonah (prophet), John (gospel; chosen over the
# synoptic gospels, which overlap each other heavily), Romans (epistle), Revelation (apocalyptic).
VAL_BOOKS = ["Ruth", "Ecclesiastes", "Jonah", "John", "Romans", "Revelation"]

VERSE_RE = re.compile(r"^([1-3]?[A-Za-z]+)(\d+):(\d+) (.*)$")


def read_bible(bible_cmd):
    """Run `bible -f` over the whole range; returns the list of (abbrev, chapter, verse, text)."""
    cmd = [bible_cmd, "-f", "Gen1:1-Rev22:21"]
    env = dict(os.environ)
    env.pop("COLUMNS", None)  # irrelevant with -f (no line wrapping), removed to be safe
    try:
        out = subprocess.run(cmd, capture_output=True, check=True, env=env, stdin=subprocess.DEVNULL).stdout
    except FileNotFoundError:
        sys.exit(f"error: '{bible_cmd}' not found; install Debian's bible-kjv package (apt-get install bible-kjv)")
    text = out.decode("ascii")  # the KJV text of bible-kjv is pure ASCII; fail loudly otherwise
    verses = []
    for lineno, line in enumerate(text.split("\n"), 1):
        if line == "":
            continue
        m = VERSE_RE.match(line)
        if m is None:
            sys.exit(f"error: unexpected line {lineno} from {' '.join(cmd)!r}: {line[:80]!r}")
        verses.append((m.group(1), int(m.group(2)), int(m.group(3)), m.group(4)))
    if len(verses) != NUM_VERSES:
        sys.exit(f"error: expected {NUM_VERSES} verses, got {len(verses)}")
    return verses


def build_documents(verses):
    """Group verses into one document per book; returns a list of (book name, text)."""
    abbrev_to_name = dict(BOOKS)
    order = []
    chapters = {}  # abbrev -> list of chapters, each a list of verse strings
    prev = None
    for abbrev, ch, vs, text in verses:
        if abbrev not in abbrev_to_name:
            sys.exit(f"error: unknown book abbreviation {abbrev!r}")
        if abbrev not in chapters:
            order.append(abbrev)
            chapters[abbrev] = []
            prev = (abbrev, 0, 0)
        # verses must come in order: next verse, or verse 1 of the next chapter
        if not ((ch == prev[1] and vs == prev[2] + 1) or (ch == prev[1] + 1 and vs == 1)):
            sys.exit(f"error: verse {abbrev}{ch}:{vs} out of order after {prev}")
        if ch != prev[1]:
            chapters[abbrev].append([])
        chapters[abbrev][-1].append(" ".join(text.split()))
        prev = (abbrev, ch, vs)
    if order != [a for a, _ in BOOKS]:
        sys.exit(f"error: books are not the expected 66 in canonical order: {order}")
    docs = []
    for abbrev in order:
        paragraphs = [" ".join(v) for v in chapters[abbrev]]
        docs.append((abbrev_to_name[abbrev], abbrev_to_name[abbrev] + "\n\n" + "\n\n".join(paragraphs)))
    return docs


def tokenize(enc, docs):
    out = []
    for _, text in docs:
        toks = enc.encode_ordinary(text)
        if enc.decode(toks) != text:
            sys.exit("error: tiktoken round trip failed")
        out.append(np.array([EOT_ID] + toks, dtype=np.uint16))
    return out


def expected_text(docs):
    return "".join(EOT_TEXT + text for _, text in docs)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ranks", type=str, default=None,
                        help="path to GPT-2's gpt2.tiktoken merge ranks (default: none, use tiktoken's registry)")
    parser.add_argument("--bible", type=str, default="bible", help="the bible-kjv program (default: bible)")
    parser.add_argument("--out_dir", type=str, default=os.path.join(REPO_ROOT, "data", "kjv"),
                        help="where kjv_train.bin / kjv_val.bin go (default: <repo>/data/kjv)")
    parser.add_argument("--tokenizer_out", type=str, default=os.path.join(REPO_ROOT, "data", "gpt2_tokenizer.bin"),
                        help="tokenizer file to write (default: <repo>/data/gpt2_tokenizer.bin); '' to skip")
    parser.add_argument("--text_out", type=str, default=None,
                        help="optionally also write the plain text (with <|endoftext|> markers) here")
    args = parser.parse_args()

    if args.ranks is None:
        print("no --ranks given: using tiktoken.get_encoding('gpt2') (needs network or a warm tiktoken cache)")
    enc = get_gpt2_encoding(args.ranks)

    verses = read_bible(args.bible)
    docs = build_documents(verses)
    print(f"read {len(verses):,} verses in {len(docs)} books, {sum(len(t) for _, t in docs):,} characters")
    doc_toks = tokenize(enc, docs)

    # whole-corpus round trip through tiktoken: encode the full text with its EOT markers at once
    full_text = expected_text(docs)
    all_toks = np.concatenate(doc_toks)
    assert enc.encode(full_text, allowed_special={EOT_TEXT}) == all_toks.tolist(), "whole-corpus encode mismatch"
    assert enc.decode(all_toks.tolist()) == full_text, "whole-corpus decode mismatch"

    names = [name for name, _ in docs]
    for b in VAL_BOOKS:
        assert b in names, b
    is_val = [name in VAL_BOOKS for name in names]
    val_docs = [d for d, v in zip(docs, is_val) if v]
    train_docs = [d for d, v in zip(docs, is_val) if not v]
    val_toks = np.concatenate([t for t, v in zip(doc_toks, is_val) if v])
    train_toks = np.concatenate([t for t, v in zip(doc_toks, is_val) if not v])
    print(f"val books: {', '.join(VAL_BOOKS)}")
    print(f"tokens: total {all_toks.size:,}, train {train_toks.size:,}, val {val_toks.size:,} "
          f"({100.0 * val_toks.size / all_toks.size:.2f}%)")
    for name, toks in zip(names, doc_toks):
        print(f"  {name:16s} {toks.size:7,d} tokens {'(val)' if name in VAL_BOOKS else ''}")

    val_path = os.path.join(args.out_dir, "kjv_val.bin")
    train_path = os.path.join(args.out_dir, "kjv_train.bin")
    write_datafile(val_path, val_toks)
    write_datafile(train_path, train_toks)
    if args.tokenizer_out:
        write_tokenizer(enc, args.tokenizer_out)
    if args.text_out:
        with open(args.text_out, "w", encoding="utf-8", newline="") as f:
            f.write(full_text)
        print(f"wrote text to {args.text_out}")

    # read everything back and check it decodes to exactly the text we started from
    if args.tokenizer_out:
        table, eot = read_tokenizer(args.tokenizer_out)
        assert eot == EOT_ID and len(table) == enc.n_vocab
        assert all(table[i] == enc.decode_single_token_bytes(i) for i in range(enc.n_vocab)), "tokenizer file mismatch"
    else:
        table = [enc.decode_single_token_bytes(i) for i in range(enc.n_vocab)]
    for path, part_docs, toks in ((val_path, val_docs, val_toks), (train_path, train_docs, train_toks)):
        back = read_datafile(path)
        assert np.array_equal(back, toks), f"{path}: tokens differ after reading back"
        assert decode_with_table(table, back) == expected_text(part_docs).encode("ascii"), f"{path}: text differs"
    print("verified: shards decode (via the tokenizer file) to exactly the source text; tiktoken round trip exact")

    for path in [val_path, train_path] + ([args.tokenizer_out] if args.tokenizer_out else []):
        with open(path, "rb") as f:
            data = f.read()
        print(f"{hashlib.sha256(data).hexdigest()}  {len(data):>9,d} bytes  {path}")


if __name__ == "__main__":
    main()
