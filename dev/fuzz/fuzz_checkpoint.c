// libFuzzer harness: a model checkpoint through model_read_config (header bounds, size) and, for models
// small enough, model_read_stage of both stages of a 2-stage split (the non-finite check).
#include "dev/fuzz/fuzz.h"
#include "llmc/model.h"

static float* params;

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const char* path = fuzz_write_file(data, size, ".bin");
    fatal_hook = fuzz_bail;
    if (setjmp(fuzz_jmp) == 0) {
        GPT2Config c = model_read_config(path);
        if (model_num_parameters(&c) <= (1u << 20)) {
            params = (float*)malloc_check(model_num_parameters(&c) * sizeof(float));
            int half = c.num_layers;  // of the 2L half-layer units: with L odd the boundary falls inside a layer
            StageLayout first = stage_layout(&c, 0, half, 1, 0);
            StageLayout last = stage_layout(&c, half, 2 * c.num_layers - half, 0, 1);
            model_read_stage(path, &c, &first, params);
            model_read_stage(path, &c, &last, params);
        }
    }
    fuzz_close_all();
    free(params);
    params = NULL;
    return 0;
}
