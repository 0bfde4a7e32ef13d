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
        size_t total = 0;
        for (uint32_t i = 0; i <= tok.vocab_size; i++) {
            const char* piece = tokenizer_decode(&tok, i);
            if (piece) { total += strlen(piece); }
        }
        if (total == 0) { abort(); }  // every token has at least one byte
        tokenizer_check_model(&tok, size % 2 ? 101 : 50257);
    }
    fuzz_close_all();
    tokenizer_free(&tok);
    return 0;
}
