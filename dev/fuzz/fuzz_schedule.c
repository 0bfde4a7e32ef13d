// libFuzzer harness: schedule text through the parser, the message insertion for compute-only files and
// the validator, as schedule_load_file runs them (without its 64 MiB read buffer per call).
#include "dev/fuzz/fuzz.h"
#include "llmc/schedule_text.h"

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (memchr(data, 0, size) != NULL) { return 0; }  // schedule_load_file refuses a NUL before parsing
    char* text = (char*)malloc(size + 1);
    memcpy(text, data, size);
    text[size] = '\0';
    Schedule s;
    char err[512];
    int rc = schedule_parse(text, &s, err, sizeof(err));
    if (rc == 0 && !schedule_has_comms(&s)) { rc = schedule_add_comms(&s, err, sizeof(err)); }
    if (rc == 0) { rc = schedule_validate(&s, err, sizeof(err)); }
    schedule_free(&s);  // the parser leaves s empty when it fails
    if (rc != 0 && err[0] == '\0') { abort(); }  // every refusal says why
    free(text);
    return 0;
}
