"""
FineWeb (HuggingFaceFW/fineweb, the "sample-10BT" subset: about 10B GPT-2 tokens) as GPT-2 token
shards for the C trainer. Needs network access and `pip install datasets tiktoken numpy`.

    python dev/data/fineweb.py                  # FineWeb sample-10BT, shards of 1e8 tokens
    python dev/data/fineweb.py -t edu           # FineWeb-Edu sample-10BT instead
    python dev/data/fineweb.py -s 10000000      # smaller shards (-s: tokens per shard)
    python dev/data/fineweb.py -m 2             # stop after 2 shards (a quick, small download)

The dataset is streamed (nothing but the shards is stored) and tokenized in parallel by a pool of
worker processes (-w). Every document is preceded by <|endoftext|> (50256); documents are packed
back to back and may straddle two shards. Shard 0 is the validation shard, the rest are training:

    <out_dir>/fineweb_val_000000.bin, fineweb_train_000001.bin, ...
    (edufineweb_val_000000.bin, ... with -t edu)

Each full shard holds exactly -s tokens (the last one fewer): 1e8 tokens = 200 MB + 1 KB header,
so sample-10BT is about 100 shards, 20 GB. Shard format: see data_common.py.
"""

import argparse
import multiprocessing as mp
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from data_common import EOT_ID, get_gpt2_encoding, write_datafile  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DATASETS = {
    # type: (HF repository, file prefix, default output folder)
    "classic": ("HuggingFaceFW/fineweb", "fineweb", os.path.join(HERE, "fineweb10B")),
    "edu": ("HuggingFaceFW/fineweb-edu", "edufineweb", os.path.join(HERE, "edu_fineweb10B")),
}

_enc = None  # the tokenizer, one per worker process


def init_worker(ranks_path):
    global _enc
    _enc = get_gpt2_encoding(ranks_path)


def tokenize(text):
    """One document -> uint16 tokens, preceded by the EOT token."""
    toks = np.array([EOT_ID] + _enc.encode_ordinary(text), dtype=np.int64)
    if not ((toks >= 0) & (toks < 2**16)).all():
        raise ValueError("token id out of uint16 range")
    return toks.astype(np.uint16)


def main():
    parser = argparse.ArgumentParser(description="FineWeb -> GPT-2 token shards")
    parser.add_argument("-t", "--type", choices=sorted(DATASETS), default="classic",
                        help="classic = FineWeb, edu = FineWeb-Edu (default: %(default)s)")
    parser.add_argument("-n", "--name", type=str, default="sample-10BT",
                        help="dataset configuration (default: %(default)s)")
    parser.add_argument("-s", "--shard_size", type=int, default=10**8, help="tokens per shard (default: 1e8)")
    parser.add_argument("-w", "--workers", type=int, default=max(1, (os.cpu_count() or 2) - 2),
                        help="tokenizer processes (default: CPUs - 2)")
    parser.add_argument("-m", "--max_shards", type=int, default=0, help="stop after this many shards (0: all)")
    parser.add_argument("-o", "--out_dir", type=str, default=None, help="output folder (default: per type)")
    parser.add_argument("--ranks", type=str, default=None,
                        help="path to gpt2.tiktoken to build the tokenizer offline (default: tiktoken's gpt2)")
    args = parser.parse_args()
    if not 0 < args.shard_size < 2**31:
        parser.error("-s must be in 1 .. 2^31-1")
    if args.workers < 1:
        parser.error("-w must be >= 1")

    hf_repo, prefix, default_dir = DATASETS[args.type]
    out_dir = args.out_dir or default_dir
    os.makedirs(out_dir, exist_ok=True)

    # fail early (in this process) if the tokenizer cannot be had
    get_gpt2_encoding(args.ranks)

    buf = np.empty(args.shard_size, dtype=np.uint16)
    filled = 0
    shard_index = 0
    ndocs = 0
    t0 = time.time()

    def flush():
        nonlocal filled, shard_index
        split = "val" if shard_index == 0 else "train"
        path = os.path.join(out_dir, f"{prefix}_{split}_{shard_index:06d}.bin")
        write_datafile(path, buf[:filled])
        print(f"  shard {shard_index}: {ndocs:,} documents so far, {time.time() - t0:.0f} s")
        shard_index += 1
        filled = 0

    # start the workers before the dataset's network machinery exists in this process
    with mp.Pool(args.workers, initializer=init_worker, initargs=(args.ranks,)) as pool:
        from datasets import load_dataset
        ds = load_dataset(hf_repo, name=args.name, split="train", streaming=True)
        texts = (doc["text"] for doc in ds)
        done = False
        for toks in pool.imap(tokenize, texts, chunksize=16):
            ndocs += 1
            pos = 0
            while pos < toks.size:
                take = min(args.shard_size - filled, toks.size - pos)
                buf[filled:filled + take] = toks[pos:pos + take]
                filled += take
                pos += take
                if filled == args.shard_size:
                    flush()
                    if args.max_shards and shard_index >= args.max_shards:
                        done = True
                        break
            if done:
                break
    if filled > 0:
        flush()
    print(f"done: {shard_index} shards, {ndocs:,} documents, in {out_dir}")


if __name__ == "__main__":
    main()
