// libFuzzer harness: the command line. The input is split at NUL bytes into arguments for
// train_args_parse (either trainer's flag set), then the model descriptor and the layer split it names.
#include "dev/fuzz/fuzz.h"
#include "llmc/train_args.h"
#include "llmc/model.h"
#include "llmc/partition.h"

#define MAX_ARGS 64

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 1 || size > 4096) { return 0; }
    char* text = (char*)malloc(size + 1);
    memcpy(text, data + 1, size - 1);
    text[size - 1] = '\0';
    char* argv[MAX_ARGS + 1] = {(char*)"train"};
    int argc = 1;
    for (char* p = text; p < text + size - 1 && argc < MAX_ARGS; p += strlen(p) + 1) {
        if (strcmp(p, "-h") != 0) { argv[argc++] = p; }  // -h prints the usage and exits 0, by design
    }
    fatal_hook = fuzz_bail;
    if (setjmp(fuzz_jmp) == 0) {
        TrainArgs a;
        train_args_default(&a, 0.0f);
        train_args_parse(&a, argc, argv, data[0] & 1, 0);
        size_t n = strlen(a.model_arg);
        if (n < 4 || strcmp(a.model_arg + n - 4, ".bin") != 0) {
            GPT2Config c = config_from_descriptor(a.model_arg);
            int P = a.P > 0 ? a.P : 1;
            int* units = (int*)malloc_check(2 * (size_t)P * sizeof(int));
            char err[256];
            if (a.layers_arg) { partition_parse(a.layers_arg, c.num_layers, P, units, units + P, err, sizeof(err)); }
            free(units);
        }
    }
    free(text);
    return 0;
}
