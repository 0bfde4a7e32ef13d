/*
Decodes GPT-2 token ids to text with llm.c's tokenizer file: a 256 x int32 header ([0] = 20240328,
[1] = version 1 or 2, [2] = number of tokens, [3] = the end-of-text id, version 2 only), then per token a
one-byte length and that many raw bytes. There is no encoder here: training data arrives tokenized.
*/
#ifndef LLMC_TOKENIZER_H
#define LLMC_TOKENIZER_H

#include <ctype.h>
#include <stdint.h>
#include "utils.h"

#define TOKENIZER_MAGIC 20240328

typedef struct {
    uint32_t vocab_size;
    char** token_table;
    int eot_token;
} Tokenizer;

static void tokenizer_init(Tokenizer* tok, const char* path) {
    FILE* f = fopen_check(path, "rb");
    int32_t header[256];
    fread_check(header, sizeof(int32_t), 256, f, path);
    if (header[0] != TOKENIZER_MAGIC) {
        fatal("%s: bad magic %d, expected %d (an llm.c GPT-2 tokenizer file)", path, header[0], TOKENIZER_MAGIC);
    }
    if (header[1] != 1 && header[1] != 2) {
        fatal("%s: unsupported tokenizer version %d, expected 1 or 2", path, header[1]);
    }
    if (header[2] <= 0 || header[2] > (1 << 20)) { fatal("%s: implausible vocabulary size %d", path, header[2]); }
    tok->vocab_size = (uint32_t)header[2];
    tok->eot_token = header[1] == 2 ? header[3] : 50256;  // version 1 predates the field; GPT-2's EOT
    tok->token_table = (char**)calloc_check(tok->vocab_size, sizeof(char*));
    for (uint32_t i = 0; i < tok->vocab_size; i++) {
        unsigned char length;
        fread_check(&length, 1, 1, f, path);
        if (length == 0) { fatal("%s: token %u has length 0", path, i); }
        tok->token_table[i] = (char*)malloc_check(length + 1);
        fread_check(tok->token_table[i], 1, length, f, path);
        tok->token_table[i][length] = '\0';
    }
    fclose(f);
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
    for (uint32_t i = 0; i < tok->vocab_size; i++) { free(tok->token_table[i]); }
    free(tok->token_table);
}

#endif
