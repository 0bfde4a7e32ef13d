// libFuzzer harness: a training state file through checkpoint_load_state (header fields, size, the m and v
// non-finite checks) for a tiny model, then the resume check against the default flags.
#include "dev/fuzz/fuzz.h"
#include "llmc/train_state.h"

static void ignore_moments(void* ctx, int which, float* global) { (void)ctx; (void)which; (void)global; }

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    // the shape dev/fuzz/run.sh's seed states are made for: 4 x 8 x 1 layer, 2 heads
    GPT2Config c = {4, 5, 8, 1, 2, 8};
    const char* path = fuzz_write_file(data, size, ".state");
    fatal_hook = fuzz_bail;
    if (setjmp(fuzz_jmp) == 0) {
        TrainState ts = checkpoint_load_state(path, &c, ignore_moments, NULL);
        TrainArgs a;
        train_args_default(&a, 0.0f);
        a.max_steps = TRAIN_MAX_STEPS;
        train_state_resume_check(&ts, &a, path, NULL);
    }
    fuzz_close_all();
    return 0;
}
