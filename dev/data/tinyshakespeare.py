"""
Tiny Shakespeare (about 1 MB of Shakespeare's plays, from karpathy/char-rnn) as GPT-2 token shards.
Needs network access the first time (the text, and tiktoken's GPT-2 vocabulary unless --ranks is given).

    python dev/data/tinyshakespeare.py

writes (by default under dev/data/tinyshakespeare/):
    tiny_shakespeare_val.bin    the first 32,768 tokens
    tiny_shakespeare_train.bin  the rest

The text is cut at blank lines into passages (one speaker's lines each); every passage is
preceded by <|endoftext|> (50256), the llm.c convention for document boundaries.
Shard format: see data_common.py.
"""

import argparse
import os
import re
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from data_common import EOT_ID, download_file, get_gpt2_encoding, write_datafile  # noqa: E402

URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
DEFAULT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tinyshakespeare")
VAL_TOKENS = 32768


def tokenize(enc, text):
    # cut right after each run of blank lines, so every passage keeps its trailing blank
    # line(s) and the passages concatenate back to exactly the original text
    passages = [p for p in re.split(r"(?<=\n\n)(?=[^\n])", text) if p]
    assert "".join(passages) == text
    toks = []
    for p in passages:
        toks.append(EOT_ID)
        toks.extend(enc.encode_ordinary(p))
    return np.array(toks, dtype=np.uint16)


def main():
    parser = argparse.ArgumentParser(description="Tiny Shakespeare -> GPT-2 token shards")
    parser.add_argument("--out_dir", type=str, default=DEFAULT_DIR, help="output folder (default: %(default)s)")
    parser.add_argument("--ranks", type=str, default=None,
                        help="path to gpt2.tiktoken to build the tokenizer offline (default: tiktoken's gpt2)")
    args = parser.parse_args()

    text_path = os.path.join(args.out_dir, "tiny_shakespeare.txt")
    if not os.path.exists(text_path):
        download_file(URL, text_path)
    else:
        print(f"{text_path} already exists, skipping download")
    with open(text_path, "r", encoding="utf-8") as f:
        text = f.read()

    enc = get_gpt2_encoding(args.ranks)
    toks = tokenize(enc, text)
    print(f"{len(text):,} characters -> {toks.size:,} tokens")
    if toks.size <= VAL_TOKENS:
        sys.exit(f"error: only {toks.size} tokens, fewer than the {VAL_TOKENS} wanted for val")
    write_datafile(os.path.join(args.out_dir, "tiny_shakespeare_val.bin"), toks[:VAL_TOKENS])
    write_datafile(os.path.join(args.out_dir, "tiny_shakespeare_train.bin"), toks[VAL_TOKENS:])


if __name__ == "__main__":
    main()
