// libFuzzer harness: a token shard through dataloader_init (header, size and every token checked) and a
// few batches, with B, T and the vocabulary size from the input's first bytes.
#include "dev/fuzz/fuzz.h"
#include "llmc/dataloader.h"

static DataLoader dl;

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 4) { return 0; }
    int B = 1 + data[0] % 4, T = 1 + data[1] % 16, V = 1 + (data[2] | data[3] << 8);
    const char* path = fuzz_write_file(data + 4, size - 4, ".bin");
    fatal_hook = fuzz_bail;
    if (setjmp(fuzz_jmp) == 0) {
        dataloader_init(&dl, path, B, T, V);
        for (int i = 0; i < 3; i++) { dataloader_next_batch(&dl); }
        dataloader_seek(&dl, 0, data[0]);
    }
    fuzz_close_all();
    dataloader_free(&dl);
    memset(&dl, 0, sizeof(dl));
    return 0;
}
