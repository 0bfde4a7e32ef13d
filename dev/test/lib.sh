# dev/test/lib.sh -- sourced by the test scripts (from the repository root): the binary under test, a scratch
# directory removed at exit, check, the closing "N passed, N failed" line that run_suite.sh and CI read, and
# Open MPI allowed to run as root (CI containers do).
BIN=${BIN:-./train_gpt2_pp_cpu}
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
passed=0; failed=0
# check <label> <condition>: the condition is a shell command, eval'ed; a failure prints the label
check() { if eval "$2"; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAIL: $1"; fi; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
# true when mpirun is installed and $BIN was built with MPI (its -h then documents mpirun)
mpi_built() { command -v mpirun > /dev/null && $BIN -h 2>&1 | grep -q mpirun; }
# the last line of every test script; its exit status is the script's
summary() { echo "$passed passed, $failed failed"; [ $failed -eq 0 ]; }
