"""
Shared helpers for the dataset scripts in dev/data/.

Two binary formats, both little-endian and both starting with a header of
256 int32 values (1024 bytes); unused header slots are 0.

Token shard (.bin), read by the C trainer's data loader:
    header[0] = 20240520   magic
    header[1] = 1          version (1 = GPT-2 tokens stored as uint16)
    header[2] = N          number of tokens that follow
    payload   = N x uint16 token ids

Tokenizer (.bin), read by the C trainer to decode token ids for printing:
    header[0] = 20240328   magic
    header[1] = 2          version (2 = EOT id stored in header[3])
    header[2] = V          number of tokens (50257 for GPT-2)
    header[3] = EOT id     (50256 for GPT-2)
    payload   = for each token id 0..V-1: one uint8 length L (1..255),
                then the L raw bytes of that token

Everything here works on plain numpy / bytes; only download_file and
get_gpt2_encoding(None) touch the network.
"""

import hashlib
import os
import sys
import urllib.request

import numpy as np

HEADER_INTS = 256
HEADER_BYTES = HEADER_INTS * 4

DATA_MAGIC = 20240520
DATA_VERSION = 1
TOKENIZER_MAGIC = 20240328
TOKENIZER_VERSION = 2


def _ensure_parent(filename):
    parent = os.path.dirname(os.path.abspath(filename))
    os.makedirs(parent, exist_ok=True)


def write_datafile(filename, toks):
    """Write a sequence of token ids (ints in [0, 65535]) as an llm.c token shard.

    Returns the number of tokens written.
    """
    toks = np.asarray(toks)
    if toks.ndim != 1:
        raise ValueError(f"{filename}: expected a 1-D sequence of tokens, got shape {toks.shape}")
    if toks.size >= 2**31:
        raise ValueError(f"{filename}: too many tokens for one shard ({toks.size})")
    if toks.size > 0 and (toks.min() < 0 or toks.max() > 65535):
        raise ValueError(f"{filename}: token ids must fit in uint16 (got range {toks.min()}..{toks.max()})")
    header = np.zeros(HEADER_INTS, dtype="<i4")
    header[0] = DATA_MAGIC
    header[1] = DATA_VERSION
    header[2] = toks.size
    payload = toks.astype("<u2", copy=False)
    _ensure_parent(filename)
    with open(filename, "wb") as f:
        f.write(header.tobytes())
        f.write(payload.tobytes())
    print(f"writing {toks.size:,} tokens to {filename} ({HEADER_BYTES + 2 * toks.size:,} bytes)")
    return int(toks.size)


def read_datafile(filename):
    """Read an llm.c token shard back; checks the header. Returns a numpy uint16 array."""
    with open(filename, "rb") as f:
        header = np.frombuffer(f.read(HEADER_BYTES), dtype="<i4")
        if header.size != HEADER_INTS:
            raise ValueError(f"{filename}: file too short for a header")
        if header[0] != DATA_MAGIC:
            raise ValueError(f"{filename}: bad magic {header[0]} (expected {DATA_MAGIC})")
        if header[1] != DATA_VERSION:
            raise ValueError(f"{filename}: bad version {header[1]} (expected {DATA_VERSION})")
        ntok = int(header[2])
        toks = np.frombuffer(f.read(), dtype="<u2")
    if toks.size != ntok:
        raise ValueError(f"{filename}: header says {ntok} tokens, file holds {toks.size}")
    return toks


def token_bytes_table(enc):
    """List of the raw bytes of every token id 0..n_vocab-1 of a tiktoken Encoding."""
    return [enc.decode_single_token_bytes(i) for i in range(enc.n_vocab)]


def write_tokenizer(enc, filename):
    """Write the vocabulary of a tiktoken Encoding (e.g. GPT-2) in the llm.c tokenizer format."""
    n = enc.n_vocab
    eot = enc.eot_token
    table = token_bytes_table(enc)
    header = np.zeros(HEADER_INTS, dtype="<i4")
    header[0] = TOKENIZER_MAGIC
    header[1] = TOKENIZER_VERSION
    header[2] = n
    header[3] = eot
    chunks = [header.tobytes()]
    for i, b in enumerate(table):
        if not 1 <= len(b) <= 255:
            raise ValueError(f"token {i} has {len(b)} bytes; the format allows 1..255")
        chunks.append(bytes([len(b)]))
        chunks.append(b)
    data = b"".join(chunks)
    _ensure_parent(filename)
    with open(filename, "wb") as f:
        f.write(data)
    print(f"wrote tokenizer with {n} tokens (EOT {eot}) to {filename} ({len(data):,} bytes)")
    return n


def read_tokenizer(filename):
    """Read an llm.c tokenizer file. Returns (list of token bytes, eot id)."""
    with open(filename, "rb") as f:
        data = f.read()
    header = np.frombuffer(data[:HEADER_BYTES], dtype="<i4")
    if header.size != HEADER_INTS or header[0] != TOKENIZER_MAGIC:
        raise ValueError(f"{filename}: not an llm.c tokenizer file")
    version = int(header[1])
    if version not in (1, 2):
        raise ValueError(f"{filename}: unknown tokenizer version {version}")
    n = int(header[2])
    eot = int(header[3]) if version == 2 else 50256
    table = []
    pos = HEADER_BYTES
    for i in range(n):
        if pos >= len(data):
            raise ValueError(f"{filename}: truncated at token {i}")
        length = data[pos]
        if length == 0:
            raise ValueError(f"{filename}: token {i} has length 0")
        table.append(data[pos + 1:pos + 1 + length])
        pos += 1 + length
    if pos != len(data):
        raise ValueError(f"{filename}: {len(data) - pos} trailing bytes after {n} tokens")
    return table, eot


def decode_with_table(table, toks):
    """Decode token ids to bytes using a token-bytes table (as read_tokenizer returns)."""
    return b"".join(table[int(t)] for t in toks)


# ----------------------------------------------------------------------------
# GPT-2 tokenizer and downloads

# GPT-2's pre-tokenizer regex, as in OpenAI's original encoder.py
GPT2_PAT = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
# sha256 of gpt2.tiktoken from the openai/whisper repository (whisper/assets/gpt2.tiktoken),
# byte-identical to tiktoken's own r50k_base.tiktoken
GPT2_RANKS_SHA256 = "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930"
EOT_TEXT = "<|endoftext|>"
EOT_ID = 50256


def get_gpt2_encoding(ranks_path=None):
    """The GPT-2 tokenizer as a tiktoken Encoding.

    ranks_path: path to GPT-2's merge ranks file gpt2.tiktoken, to build it offline; None uses
    tiktoken.get_encoding("gpt2"), which downloads the vocabulary the first time (network).
    """
    import tiktoken
    if ranks_path is None:
        enc = tiktoken.get_encoding("gpt2")
    else:
        import tiktoken.load
        with open(ranks_path, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
        if digest != GPT2_RANKS_SHA256:
            sys.exit(f"error: {ranks_path} has sha256 {digest}, expected GPT-2's {GPT2_RANKS_SHA256}")
        enc = tiktoken.Encoding(
            name="gpt2",
            pat_str=GPT2_PAT,
            mergeable_ranks=tiktoken.load.load_tiktoken_bpe(ranks_path),
            special_tokens={EOT_TEXT: EOT_ID},
        )
    check_gpt2_encoding(enc)
    return enc


def check_gpt2_encoding(enc):
    """Cheap sanity checks that enc really is GPT-2's tokenizer."""
    assert enc.n_vocab == 50257, enc.n_vocab
    assert enc.eot_token == EOT_ID, enc.eot_token
    assert enc.encode_ordinary("Hello world") == [15496, 995]
    assert enc.encode_ordinary(" the") == [262]
    assert enc.encode(EOT_TEXT, allowed_special="all") == [EOT_ID]
    assert enc.decode_single_token_bytes(EOT_ID) == EOT_TEXT.encode()


def download_file(url, filename, chunk_size=1 << 20):
    """Download url to filename (via a temporary file, so an interrupted download leaves nothing)."""
    _ensure_parent(filename)
    tmp = filename + ".part"
    print(f"downloading {url} to {filename}")
    with urllib.request.urlopen(url) as resp, open(tmp, "wb") as f:
        total = int(resp.headers.get("Content-Length") or 0)
        done = 0
        while True:
            chunk = resp.read(chunk_size)
            if not chunk:
                break
            f.write(chunk)
            done += len(chunk)
            if total:
                print(f"\r  {done:,} / {total:,} bytes", end="", flush=True)
    if total:
        print()
    os.replace(tmp, filename)
