// libFuzzer harness: a tokenizer file through tokenizer_init, its check against a model's vocabulary, and
// the decoding of every id.
#include "dev/fuzz/fuzz.h"
#include "llmc/tokenizer.h"

static Tokenizer tok;

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const char* path = fuzz_write_file(data, size, ".tok");
    fatal_hook = fuzz_bail;
    memset(&tok, 0, sizeof(tok));
    if (setjmp(fuzz_jmp) == 0) {
        tokenizer_init(&tok, path);
        // every id of the vocabulary decodes (a piece may start with a NUL byte: GPT-2 has a token for byte 0),
        // and the first id past it does not
        for (uint32_t i = 0; i < tok.vocab_size; i++) {
            if (tokenizer_decode(&tok, i) == NULL) { abort(); }
        }
        if (tokenizer_decode(&tok, tok.vocab_size) != NULL) { abort(); }
        tokenizer_check_model(&tok, size % 2 ? 101 : 50257);
    }
    fuzz_close_all();
    tokenizer_free(&tok);
    return 0;
}
