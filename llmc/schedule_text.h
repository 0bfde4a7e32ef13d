/*
The text form of a pipeline schedule (header-only; C11 and C++): format, print, parse, load.

One line per rank, rank 0 first, in PyTorch's torch.distributed.pipelining action grammar,
so schedules can be exchanged with it:
    <stage><TYPE><microbatch>   TYPE in F B I W SEND_F RECV_F SEND_B RECV_B
    e.g. "0F3" forward of stage 0 on micro-batch 3; "1RECV_F3" stage 1 receives the input
    of micro-batch 3; "1SEND_B3" stage 1 sends d(input) of micro-batch 3 to stage 0.
Message tokens carry the local stage: SEND_F/RECV_B name stage s whose peer is stage s+1,
RECV_F/SEND_B stage s whose peer is stage s-1. Tokens are separated by spaces, tabs or
commas (a PyTorch CSV loads as is), '#' starts a comment, blank lines are ignored, a line
holding only "-" is a rank with no actions. P = number of rows, S = max(P, largest stage
+ 1), M = largest micro-batch + 1, and a stage runs on the rank whose row holds it.
A file may list compute actions only: schedule_load_file then adds the messages.

Example, GPipe P=2 M=2 (what schedule_format writes for schedule_build("gpipe", 2, 2)):
    0F0 0SEND_F0 0F1 0SEND_F1 0RECV_B0 0B0 0RECV_B1 0B1
    1RECV_F0 1F0 1RECV_F1 1F1 1B0 1SEND_B0 1B1 1SEND_B1
*/
#ifndef LLMC_SCHEDULE_TEXT_H
#define LLMC_SCHEDULE_TEXT_H

#include "schedule.h"

// schedule files larger than this are refused (the largest schedule within the bounds is ~40 MiB)
#define SCHEDULE_MAX_FILE_BYTES (64u << 20)

static inline void pp_append(char* buf, size_t cap, size_t* len, size_t* written, const char* t) {
    size_t tl = strlen(t);
    if (*written == *len && *len + tl < cap) { memcpy(buf + *len, t, tl); *written += tl; }
    *len += tl;
}

// writes the text form into buf (always NUL-terminated if cap > 0); returns the full
// length it needs, like snprintf, so call with cap 0 first to size the buffer
static inline size_t schedule_format(const Schedule* s, char* buf, size_t cap) {
    size_t len = 0, written = 0;  // written < len once the buffer is full
    char tok[48];
    for (int r = 0; r < s->P; r++) {
        const ActionList* L = &s->ranks[r];
        if (L->n == 0) pp_append(buf, cap, &len, &written, "-");
        for (int i = 0; i < L->n; i++) {
            if (i > 0) pp_append(buf, cap, &len, &written, " ");
            pp_append(buf, cap, &len, &written, schedule_action_str(&L->a[i], tok, sizeof(tok)));
        }
        pp_append(buf, cap, &len, &written, "\n");
    }
    if (cap > 0) buf[written] = 0;
    return len;
}

static inline void schedule_fprint(const Schedule* s, FILE* f) {
    size_t n = schedule_format(s, NULL, 0);
    char* buf = (char*)malloc(n + 1);
    schedule_format(s, buf, n + 1);
    fputs(buf, f);
    free(buf);
}

// reads the digits at tok[*i] into v, below `bound`; 0 if there are none or too many
static inline int pp_parse_number(const char* tok, size_t len, size_t* i, int bound, int* v) {
    size_t i0 = *i;
    long x = 0;
    while (*i < len && tok[*i] >= '0' && tok[*i] <= '9') {
        x = x * 10 + (tok[(*i)++] - '0');
        if (x >= bound) return 0;
    }
    *v = (int)x;
    return *i > i0;
}

// parses one token "<stage><TYPE><mb>"; returns 0 or -1 with a reason in why
static inline int pp_parse_token(const char* tok, size_t len, Action* a, const char** why) {
    size_t i = 0;
    int stage = 0, mb = 0;
    if (len == 0 || tok[0] < '0' || tok[0] > '9') { *why = "expected a stage number first"; return -1; }
    if (!pp_parse_number(tok, len, &i, SCHEDULE_MAX_STAGES, &stage)) {
        *why = "stage number too large (stages < " PP_STR(SCHEDULE_MAX_STAGES) ")";
        return -1;
    }
    size_t t0 = i;
    while (i < len && ((tok[i] >= 'A' && tok[i] <= 'Z') || tok[i] == '_')) i++;
    if (i == t0) { *why = "expected an action type (F B I W SEND_F RECV_F SEND_B RECV_B) after the stage"; return -1; }
    int type = -1;
    for (int t = 0; t < PP_NUM_ACTION_TYPES; t++) {
        const char* name = pp_type_token((ActionType)t);
        if (strlen(name) == i - t0 && strncmp(name, tok + t0, i - t0) == 0) type = t;
    }
    if (type < 0) { *why = "unknown action type (expected F B I W SEND_F RECV_F SEND_B RECV_B)"; return -1; }
    if (i >= len) { *why = "missing micro-batch number"; return -1; }
    if (tok[i] < '0' || tok[i] > '9') { *why = "unexpected character after the action type"; return -1; }
    if (!pp_parse_number(tok, len, &i, SCHEDULE_MAX_MICROBATCHES, &mb)) {
        *why = "micro-batch number too large (micro-batches < " PP_STR(SCHEDULE_MAX_MICROBATCHES) ")";
        return -1;
    }
    if (i < len) { *why = "unexpected characters after the micro-batch number"; return -1; }
    a->type = (ActionType)type; a->stage = stage; a->mb = mb; a->peer = -1;
    return 0;
}

/*
Parses the text form (see the top of this file) into out (free it with schedule_free).
Returns 0, or -1 with "line L, token K 'TOK': reason" in err. Parsing does not validate:
call schedule_validate, or use schedule_load_file.
*/
static inline int pp_parse(const char* text, Schedule* out, int* row_line, char* err, size_t errlen) {
    if (err && errlen) err[0] = 0;
    memset(out, 0, sizeof(*out));
    int nrows = 0, maxstage = -1, maxmb = -1, line = 0;
    // rank and line of each stage, the first time a row holds it
    int* owner = (int*)malloc(2 * SCHEDULE_MAX_STAGES * sizeof(int));
    int* owner_line = owner + SCHEDULE_MAX_STAGES;
    for (int st = 0; st < SCHEDULE_MAX_STAGES; st++) owner[st] = -1;
    ActionList* rows = (ActionList*)calloc(SCHEDULE_MAX_STAGES, sizeof(ActionList));
    const char* p = text;
    const char* sep = " \t,\r";
    while (*p) {
        line++;
        const char* eol = strchr(p, '\n');
        if (!eol) eol = p + strlen(p);
        const char* end = p;
        while (end < eol && *end != '#') end++;  // strip comment
        ActionList* row = &rows[nrows < SCHEDULE_MAX_STAGES ? nrows : 0];
        int ntok = 0, empty_marker = 0;
        for (const char* q = p; q < end;) {
            while (q < end && strchr(sep, *q)) q++;
            if (q >= end) break;
            const char* t = q;
            while (q < end && !strchr(sep, *q)) q++;
            size_t tl = (size_t)(q - t);
            ntok++;
            Action a = {PP_F, 0, 0, -1};
            const char* why = NULL;
            char taken[96];
            if (nrows == SCHEDULE_MAX_STAGES) why = "too many rank rows (at most " PP_STR(SCHEDULE_MAX_STAGES) ")";
            else if (tl == 1 && t[0] == '-') empty_marker = 1;
            else if (pp_parse_token(t, tl, &a, &why) == 0 && owner[a.stage] >= 0 && owner[a.stage] != nrows) {
                snprintf(taken, sizeof(taken), "stage %d already runs on rank %d (line %d); a stage runs on one rank",
                         a.stage, owner[a.stage], owner_line[a.stage]);
                why = taken;
            }
            if (!why && empty_marker && (row->n > 0 || ntok > 1)) why = "'-' (empty rank) must be the only token on its line";
            if (why) {
                pp_errf(err, errlen, "line %d, token %d '%.*s': %s", line, ntok, (int)(tl > 40 ? 40 : tl), t, why);
                for (int r = 0; r <= nrows && r < SCHEDULE_MAX_STAGES; r++) free(rows[r].a);
                free(rows); free(owner);
                return -1;
            }
            if (empty_marker) continue;
            if (owner[a.stage] < 0) { owner[a.stage] = nrows; owner_line[a.stage] = line; }
            if (a.stage > maxstage) maxstage = a.stage;
            if (a.mb > maxmb) maxmb = a.mb;
            pp_list_push(row, a);
        }
        if (ntok > 0 && row_line) row_line[nrows] = line;
        if (ntok > 0) nrows++;
        p = *eol ? eol + 1 : eol;
    }
    if (nrows == 0) { pp_errf(err, errlen, "empty schedule: no rank rows"); free(rows); free(owner); return -1; }
    schedule_init(out, nrows, maxstage + 1 > nrows ? maxstage + 1 : nrows, maxmb + 1 > 0 ? maxmb + 1 : 1);
    free(out->ranks);
    out->ranks = rows;
    for (int st = 0; st < out->S; st++) out->stage_rank[st] = owner[st];
    for (int r = 0; r < nrows; r++)
        for (int i = 0; i < rows[r].n; i++) {
            Action* a = &rows[r].a[i];
            a->peer = pp_is_compute(a->type) ? -1 : schedule_peer(out, a->type, a->stage);
        }
    free(owner);
    return 0;
}

static inline int schedule_parse(const char* text, Schedule* out, char* err, size_t errlen) {
    return pp_parse(text, out, NULL, err, errlen);
}

/*
Reads a schedule file, adds the messages if it lists compute only, validates it. Returns 0,
or -1 with "PATH: reason" in err: parse errors name the line and the token, the validator
the rank, action and token, and the line of that rank.
*/
static inline int schedule_load_file(const char* path, Schedule* out, char* err, size_t errlen) {
    if (err && errlen) err[0] = 0;
    memset(out, 0, sizeof(*out));
    pp_errf(err, errlen, "%s: ", path);
    size_t pre = err && errlen ? strlen(err) : 0;
    char* e = err ? err + pre : NULL;
    size_t elen = errlen > pre ? errlen - pre : 0;
    FILE* f = fopen(path, "rb");
    if (!f) { pp_errf(err, errlen, "cannot open schedule file"); return -1; }
    size_t cap = 1 << 16, n = 0, got;
    char* text = (char*)malloc(cap + 1);
    while ((got = fread(text + n, 1, cap - n, f)) > 0 && (n += got) <= SCHEDULE_MAX_FILE_BYTES)
        if (n == cap) {
            cap = 2 * cap > SCHEDULE_MAX_FILE_BYTES ? SCHEDULE_MAX_FILE_BYTES + 1 : 2 * cap;
            text = (char*)realloc(text, cap + 1);
        }
    fclose(f);
    int rc = -1;
    const char* nul = (const char*)memchr(text, 0, n);
    if (n > SCHEDULE_MAX_FILE_BYTES) {
        pp_errf(err, errlen, "larger than %u bytes, not a schedule", SCHEDULE_MAX_FILE_BYTES);
    } else if (nul) {
        int line = 1;
        for (const char* c = text; c < nul; c++) line += *c == '\n';
        pp_errf(err, errlen, "line %d: NUL byte, not a text file", line);
    } else {
        text[n] = 0;
        int row_line[SCHEDULE_MAX_STAGES], r;
        rc = pp_parse(text, out, row_line, e, elen);
        if (rc == 0 && !schedule_has_comms(out)) rc = schedule_add_comms(out, e, elen);
        if (rc == 0) rc = schedule_validate(out, e, elen);
        const char* rank = rc != 0 && out->ranks && e ? strstr(e, "rank ") : NULL;
        if (rank && sscanf(rank, "rank %d", &r) == 1 && r >= 0 && r < out->P)
            pp_errf(err, errlen, " (rank %d is line %d)", r, row_line[r]);
        if (rc != 0) schedule_free(out);
    }
    free(text);
    return rc;
}

#endif // LLMC_SCHEDULE_TEXT_H
