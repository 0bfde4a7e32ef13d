/*
Command-line helper around llmc/schedule*.h and llmc/partition.h (no GPU needed).
Builds or loads a schedule, validates it, simulates it, and optionally prints its text form,
its ASCII timeline, and a Chrome/Perfetto trace for scripts/plot_pipeline.py.

  ./build/schedule_tool -sc 1f1b -P 4 -M 8 -a 1 -tr 1f1b.json
  python scripts/plot_pipeline.py 1f1b.json -o 1f1b.png
  ./build/schedule_tool -sc my_schedule.txt -p 1      (hand-written file, comms inserted if absent)
  ./build/schedule_tool -L 12 -P 4                    (default layer split of d12)
  ./build/schedule_tool -cmp 1 -P 2 -M 8 -tf 1 -tb 2 -ti 1 -tw 1   (every builder: step time, bubble, stash)

flags (llm.c style, each takes a value):
  -sc  gpipe | 1f1b | interleaved[:v] | zbh1 | zbh2 | zbv | zbc[:costs] | zbcv[:costs] | path of a schedule
       text file  (default 1f1b)
  -P   pipeline ranks (default 4)          -M  micro-batches (default 8)
  -tf  forward time per stage (default 1)  -tb backward time (default 2)  -tc comm time (default 0)
       (the simulation of one schedule splits B into I = W = tb/2; -cmp takes -ti and -tw, default 1,
       as the costs of each stage of a P-stage split)
  -cmp 1  print every builder's simulated step time, bubble and peak stash for -P, -M and the costs
  -us  microseconds per time unit in the trace (default 1000)
  -tr  write a trace JSON to this path     -p 1  print the text form    -a 1  ASCII timeline
  -L   also print the default split of L layers over P stages for GPT-2 with -C/-T/-B/-V
       (defaults C=768, T=1024, B=4, V=50304), or the split given by -pl "3,3,3,3"; -mc cpu|gpu counts
       memory traffic as the CPU or the CUDA trainer does (llmc/partition.h; default: flops only)
*/
#include "llmc/schedule.h"
#include "llmc/schedule_text.h"
#include "llmc/schedule_sim.h"
#include "llmc/partition.h"

static void usage(const char* msg) {
    fprintf(stderr, "schedule_tool: %s\nsee the top of dev/test/schedule_tool.c for the flags\n", msg);
    exit(EXIT_FAILURE);
}

int main(int argc, char** argv) {
    const char* sc = "1f1b";
    const char* trace = NULL;
    const char* pl = NULL;
    const PartitionMachine* machine = NULL;
    int P = 4, M = 8, print_text = 0, ascii = 0, compare = 0, L = 0, C = 768, T = 1024, B = 4, V = 50304;
    double tf = 1, tb = 2, ti = 1, tw = 1, tc = 0, us = 1000;
    for (int i = 1; i < argc; i += 2) {
        if (i + 1 >= argc || argv[i][0] != '-' || strlen(argv[i]) < 2) usage("flags come in pairs: -flag value");
        const char* f = argv[i] + 1;
        const char* v = argv[i + 1];
        if (strcmp(f, "sc") == 0) sc = v;
        else if (strcmp(f, "P") == 0) P = atoi(v);
        else if (strcmp(f, "M") == 0) M = atoi(v);
        else if (strcmp(f, "tf") == 0) tf = atof(v);
        else if (strcmp(f, "tb") == 0) tb = atof(v);
        else if (strcmp(f, "ti") == 0) ti = atof(v);
        else if (strcmp(f, "tw") == 0) tw = atof(v);
        else if (strcmp(f, "tc") == 0) tc = atof(v);
        else if (strcmp(f, "cmp") == 0) compare = atoi(v);
        else if (strcmp(f, "us") == 0) us = atof(v);
        else if (strcmp(f, "tr") == 0) trace = v;
        else if (strcmp(f, "p") == 0) print_text = atoi(v);
        else if (strcmp(f, "a") == 0) ascii = atoi(v);
        else if (strcmp(f, "L") == 0) L = atoi(v);
        else if (strcmp(f, "C") == 0) C = atoi(v);
        else if (strcmp(f, "T") == 0) T = atoi(v);
        else if (strcmp(f, "B") == 0) B = atoi(v);
        else if (strcmp(f, "V") == 0) V = atoi(v);
        else if (strcmp(f, "pl") == 0) pl = v;
        else if (strcmp(f, "mc") == 0 && (strcmp(v, "cpu") == 0 || strcmp(v, "gpu") == 0))
            machine = strcmp(v, "cpu") == 0 ? &PARTITION_CPU : &PARTITION_GPU;
        else usage("unknown flag");
    }

    if (L > 0) {
        int* n = (int*)malloc((size_t)(P > 0 ? P : 1) * sizeof(int));
        int* first = (int*)malloc((size_t)(P > 0 ? P : 1) * sizeof(int));
        char err[512], buf[1024];
        PartitionCosts c = partition_gpt2_costs(B, T, C, C / 64, V, machine);
        int rc = pl ? partition_parse(pl, L, P, n, first, err, sizeof(err))
                    : partition_balance(L, P, &c, n, first, err, sizeof(err));
        if (rc != 0) { fprintf(stderr, "partition: %s\n", err); return EXIT_FAILURE; }
        printf("layers per stage %s (LM head = %.2f layers of compute)\n", partition_format(n, P, buf, sizeof(buf)),
               c.head / c.layer);
        for (int s = 0; s < P; s++) {
            char count[16], from[16];
            partition_format(&n[s], 1, count, sizeof(count));
            partition_format(&first[s], 1, from, sizeof(from));
            printf("  stage %d: %s layers from %s, est. %.3f layer-units\n", s, count, from,
                   partition_stage_cost(&c, P, s, first[s], n[s]) / c.layer);
        }
        free(n); free(first);
        return 0;
    }

    if (compare) {
        StageCosts* c = (StageCosts*)malloc((size_t)(P > 0 ? P : 1) * sizeof(StageCosts));
        for (int r = 0; r < P; r++) { c[r].f = tf; c[r].b = tb; c[r].i = ti; c[r].w = tw; }
        schedule_compare_print(P, M, c, tc, stdout);
        free(c);
        return 0;
    }
    Schedule s;
    char err[4096];
    int rc = schedule_build(sc, P, M, &s);
    if (rc == SCHEDULE_ERR_ARGS) { fprintf(stderr, "-sc %s needs %s\n", sc, schedule_requires(sc)); return EXIT_FAILURE; }
    if (rc == 0 && schedule_validate(&s, err, sizeof(err)) != 0) { fprintf(stderr, "invalid: %s\n", err); return EXIT_FAILURE; }
    if (rc == SCHEDULE_ERR_NAME && schedule_load_file(sc, &s, err, sizeof(err)) != 0) {
        fprintf(stderr, "%s\n", err);
        return EXIT_FAILURE;
    }
    if (print_text) schedule_fprint(&s, stdout);
    if (ascii) schedule_print_ascii_timeline(&s, stdout);
    SimResult res;
    if (schedule_simulate(&s, tf, tb, tc, &res) != 0) { fprintf(stderr, "simulation deadlocked\n"); return EXIT_FAILURE; }
    printf("P=%d M=%d t_F=%g t_B=%g t_comm=%g: makespan %g, bubble %.4f (ideal (P-1)/(M+P-1) = %.4f)\n", s.P, s.M, tf, tb,
           tc, res.makespan, res.bubble, (double)(s.P - 1) / (s.M + s.P - 1));
    printf("peak in-flight micro-batches per stage:");
    for (int st = 0; st < s.S; st++) printf(" %d", res.peak_inflight[st]);
    printf("\npeak receive buffers per rank:         ");
    for (int r = 0; r < s.P; r++) printf(" %d", res.peak_inputs[r]);
    printf("\n");
    if (trace) {
        FILE* f = fopen(trace, "w");
        if (!f) { fprintf(stderr, "cannot write %s\n", trace); return EXIT_FAILURE; }
        schedule_write_trace(&s, &res, us, f);
        fclose(f);
        printf("wrote %s\n", trace);
    }
    sim_result_free(&res);
    schedule_free(&s);
    return 0;
}
