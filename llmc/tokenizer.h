/*
Decodes GPT-2 token ids to text with llm.c's tokenizer file: a 256 x int32 header ([0] = 20240328,
[1] = version 1 or 2, [2] = number of tokens, [3] = the end-of-text id, version 2 only), then per token a
one-byte length and that many raw bytes, and nothing after the last token. There is no encoder here:
training data arrives tokenized.
*/
#ifndef LLMC_TOKENIZER_H
#define LLMC_TOKENIZER_H

#include <ctype.h>
#include <stdint.h>
#include "utils.h"

#define TOKENIZER_MAGIC 20240328
#define TOKENIZER_MAX_VOCAB (1 << 20)

typedef struct {
    uint32_t vocab_size;
    char** token_table;
    int eot_token;
    char* path;  // for error messages
} Tokenizer;

static void tokenizer_init(Tokenizer* tok, const char* path) {
    // set first, so tokenizer_free is safe whatever point a fuzzer's longjmp leaves from
    tok->vocab_size = 0;
    tok->token_table = NULL;
    tok->path = str_printf("%s", path);
    FILE* f = fopen_check(path, "rb");
    long size = file_size(f, path);
    int32_t header[256];
    fread_check(header, sizeof(int32_t), 256, f, path);
    if (header[0] != TOKENIZER_MAGIC) {
        fatal("%s: bad magic %d, expected %d (an llm.c GPT-2 tokenizer file)", path, header[0], TOKENIZER_MAGIC);
    }
    if (header[1] != 1 && header[1] != 2) {
        fatal("%s: unsupported tokenizer version %d, expected 1 or 2", path, header[1]);
    }
    if (header[2] <= 0 || header[2] > TOKENIZER_MAX_VOCAB) {
        fatal("%s: implausible vocabulary size %d (expected 1..%d)", path, header[2], TOKENIZER_MAX_VOCAB);
    }
    // each token takes at least 2 bytes: a count larger than the file allows is refused before allocating
    if ((long)header[2] * 2 > size - 1024) {
        fatal("%s is truncated: its header says %d tokens, but only %ld bytes follow it", path, header[2], size - 1024);
    }
    int eot = header[1] == 2 ? header[3] : 50256;  // version 1 predates the field; GPT-2's EOT
    if (eot < 0 || eot >= header[2]) {
        fatal("%s: end-of-text token %d is outside its vocabulary of %d tokens", path, eot, header[2]);
    }
    tok->token_table = (char**)calloc_check((size_t)header[2], sizeof(char*));
    tok->vocab_size = (uint32_t)header[2];
    tok->eot_token = eot;
    long at = 1024;
    for (uint32_t i = 0; i < tok->vocab_size; i++) {
        unsigned char length;
        fread_check(&length, 1, 1, f, path);
        if (length == 0) { fatal("%s: token %u has length 0", path, i); }
        tok->token_table[i] = (char*)malloc_check(length + 1);
        fread_check(tok->token_table[i], 1, length, f, path);
        tok->token_table[i][length] = '\0';
        at += 1 + length;
    }
    fclose(f);
    if (at != size) {
        fatal("%s: %ld bytes after its %u tokens (a header count smaller than the file, or a corrupt file)", path,
              size - at, tok->vocab_size);
    }
}

// A model samples ids up to its vocabulary size and starts from the end-of-text id: the tokenizer must know
// every id the model can produce, and the end-of-text id must be one of the model's real (unpadded) rows.
static void tokenizer_check_model(const Tokenizer* tok, int model_vocab_size) {
    if (tok->eot_token >= model_vocab_size) {
        fatal("%s: end-of-text token %d is outside the model's vocabulary of %d tokens (use a tokenizer made for "
              "this model, or -g 0)", tok->path, tok->eot_token, model_vocab_size);
    }
    if ((int64_t)tok->vocab_size < model_vocab_size) {
        fatal("%s has %u tokens, fewer than the model's vocabulary of %d: sampled ids could not be decoded",
              tok->path, tok->vocab_size, model_vocab_size);
    }
}

static const char* tokenizer_decode(const Tokenizer* tok, uint32_t id) {
    return id < tok->vocab_size ? tok->token_table[id] : NULL;
}

// prints a token unless it is a lone control byte (byte-level BPE can split a UTF-8 character)
static void safe_print(const char* piece) {
    if (piece == NULL || piece[0] == '\0') { return; }
    if (piece[1] == '\0' && !isprint((unsigned char)piece[0]) && !isspace((unsigned char)piece[0]) &&
        (unsigned char)piece[0] < 128) {
        return;
    }
    fputs(piece, stdout);
}

static void tokenizer_free(Tokenizer* tok) {
    for (uint32_t i = 0; tok->token_table != NULL && i < tok->vocab_size; i++) { free(tok->token_table[i]); }
    free(tok->token_table);
    free(tok->path);
}

#endif
