#!/usr/bin/env bash
# ParallelCompiler build script.
#   ./build.sh                 set up (apt, npm, NuGet) and build Release; leaves bin/mplc
#   ./build.sh run FILE [..]   build if needed, then: mplc run FILE [..]
#   ./build.sh test            set up, build, run every test suite; ends with "N passed, N failed"
#   ./build.sh format          format the C# (CSharpier, to .editorconfig's width); the tests check it
#   ./build.sh bench           build, then run the benchmarks (figures go in docs/PERFORMANCE.md by hand)
#   ./build.sh publish         a NativeAOT mplrun (no .NET needed to run it) in bin/publish/, for GPU nodes
#   ./build.sh gpu-kit         that mplrun plus bundles of the examples and GPU benchmarks (bin/gpu-kit/), for
#                              tests/Bench/gpu/device.sh on a GPU node
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$(pwd)
CONFIG=Release

log() { echo "[build] $*" >&2; }

need_apt=()
setup() {
  command -v FileCheck-14 >/dev/null 2>&1 || need_apt+=(llvm-14-tools)
  /usr/bin/python3 -c 'import numpy' >/dev/null 2>&1 || need_apt+=(python3-numpy)
  command -v node >/dev/null 2>&1 || need_apt+=(nodejs npm)
  # The back end: libLLVM (any of 14 to 18) for code generation, a C compiler driver to link host kernels.
  ldconfig -p 2>/dev/null | grep -qE 'libLLVM(-1[4-8]\.so|\.so\.1[4-8])' || need_apt+=(libllvm14)
  command -v cc >/dev/null 2>&1 || need_apt+=(gcc)
  # Open MPI, for runs of several processes (mpirun -np N bin/mplrun ...) and their tests.
  command -v mpirun >/dev/null 2>&1 || need_apt+=(openmpi-bin)
  [ -e /usr/include/x86_64-linux-gnu/mpi/mpi.h ] || [ -e /usr/include/mpi.h ] || need_apt+=(libopenmpi-dev)
  if [ ${#need_apt[@]} -gt 0 ]; then
    log "installing ${need_apt[*]}"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
  fi
  command -v dotnet >/dev/null 2>&1 || { echo "error: the .NET 10 SDK is required (dotnet not found)" >&2; exit 1; }
  dotnet tool restore >/dev/null  # the formatter (CSharpier), pinned in dotnet-tools.json
  if [ ! -x grammar/node_modules/.bin/antlr-ng ]; then
    log "installing the ANTLR tool (npm ci in grammar/)"
    (cd grammar && npm ci --no-audit --no-fund --loglevel=error)
  fi
}

# NVIDIA's PTX assembler (and disassembler), an independent check that every generated PTX kernel assembles and
# how many registers it takes. Debian ships them in non-free's nvidia-cuda-toolkit; only that one package is
# fetched, from the Debian archive apt already uses, with a private apt state (the system's sources and packages
# stay as they are), and unpacked into bin/nvidia/. Best effort: without it the ptxas tests skip, saying why.
fetch_ptxas() {
  [ -x bin/nvidia/ptxas ] && [ -x bin/nvidia/nvdisasm ] && return 0
  command -v apt-get >/dev/null 2>&1 && command -v dpkg-deb >/dev/null 2>&1 \
    || { log "no apt: not fetching ptxas"; return 0; }
  local codename uri work
  codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
  uri=$(apt-get indextargets --format '$(REPO_URI) $(RELEASE)' 'Identifier: Packages' 2>/dev/null \
    | awk -v c="$codename" '$2 == c {print $1; exit}')
  if [ -z "$codename" ] || [ -z "$uri" ]; then
    log "no Debian archive for '$codename' among apt's sources: not fetching ptxas"; return 0
  fi
  log "fetching ptxas (nvidia-cuda-toolkit from $codename non-free) into bin/nvidia/"
  work=$(mktemp -d)
  mkdir -p "$work/lists/partial" "$work/archives/partial"
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $uri $codename non-free" > "$work/sources.list"
  local opts=(-qq -o "Dir::Etc::SourceList=$work/sources.list" -o Dir::Etc::SourceParts=/dev/null
              -o "Dir::State::Lists=$work/lists" -o "Dir::Cache::Archives=$work/archives" -o Debug::NoLocking=1
              -o APT::Sandbox::User=root)
  if apt-get "${opts[@]}" update >/dev/null 2>&1 \
     && (cd "$work" && apt-get "${opts[@]}" download nvidia-cuda-toolkit >/dev/null 2>&1) \
     && dpkg-deb -x "$work"/nvidia-cuda-toolkit_*.deb "$work/x"; then
    mkdir -p bin/nvidia
    cp "$work/x/usr/bin/ptxas" "$work/x/usr/bin/nvdisasm" bin/nvidia/
  else
    log "could not fetch nvidia-cuda-toolkit: the ptxas tests will skip"
  fi
  rm -rf "$work"
}

build() {
  log "restoring and building ($CONFIG)"
  dotnet build ParallelCompiler.sln -c "$CONFIG" -nologo -v quiet -clp:ErrorsOnly
  mkdir -p bin
  cat > bin/mplc <<LAUNCH
#!/usr/bin/env bash
exec dotnet "$ROOT/compiler/Mplc/bin/$CONFIG/net10.0/mplc.dll" "\$@"
LAUNCH
  cat > bin/mplrun <<LAUNCH
#!/usr/bin/env bash
exec dotnet "$ROOT/runtime/Mplrun/bin/$CONFIG/net10.0/mplrun.dll" "\$@"
LAUNCH
  chmod +x bin/mplc bin/mplrun
}

# Runs one test project; adds its counts to passed/failed/skipped (and status). Arguments: a label, the project,
# then environment assignments for that run.
run_suite() {
  local label=$1 suite=$2 out line
  shift 2
  out=$(mktemp)
  log "running $label"
  # The CUDA project is small: a normal log shows why its tests skipped, or that they ran.
  local verbosity=minimal
  [[ $suite == *Cuda* ]] && verbosity=normal
  set +e
  env "$@" dotnet test "$suite" -c "$CONFIG" --no-build -nologo --logger "console;verbosity=$verbosity" 2>&1 \
    | tee "$out"
  [ "${PIPESTATUS[0]}" -ne 0 ] && status=1
  set -e
  # Minimal: "Failed!  - Failed: 1, Passed: 10, Skipped: 0, Total: 11, ...";
  # normal: "Total tests: 11", "Passed: 10", ...
  line=$(grep -E '(Passed|Failed|Skipped)! +- Failed: +[0-9]+, Passed: +[0-9]+' "$out" | tail -1 || true)
  if [ -n "$line" ]; then
    failed=$((failed + $(sed -E 's/.*Failed: +([0-9]+).*/\1/' <<<"$line")))
    passed=$((passed + $(sed -E 's/.*Passed: +([0-9]+).*/\1/' <<<"$line")))
    skipped=$((skipped + $(sed -E 's/.*Skipped: +([0-9]+).*/\1/' <<<"$line")))
  elif grep -qE '^Total tests: [0-9]+' "$out"; then
    count() { grep -E "^ +$1: +[0-9]+" "$out" | tail -1 | grep -oE '[0-9]+' || echo 0; }
    failed=$((failed + $(count Failed)))
    passed=$((passed + $(count Passed)))
    skipped=$((skipped + $(count Skipped)))
  else
    failed=$((failed + 1))
  fi
  rm -f "$out"
}

# The formatting: CSharpier (pinned in dotnet-tools.json) holds the C# to .editorconfig's max_line_length and its
# layout; counted as one test, failed when a file is not as CSharpier would write it (./build.sh format fixes it).
check_format() {
  log "checking the C# formatting (dotnet csharpier check .)"
  if dotnet csharpier check . >&2; then
    passed=$((passed + 1))
  else
    echo "error: C# files not formatted: run ./build.sh format" >&2
    failed=$((failed + 1))
  fi
}

run_tests() {
  passed=0 failed=0 skipped=0 status=0
  check_format
  local cuda=tests/ParallelCompiler.Tests.Cuda/ParallelCompiler.Tests.Cuda.csproj
  # The main suite needs no device; the CUDA project skips each test, saying why, where there is no GPU.
  run_suite "the main suite" tests/ParallelCompiler.Tests/ParallelCompiler.Tests.csproj
  run_suite "the CUDA tests" "$cuda"
  # The CUDA tests again, on the stand-in CUDA driver and NCCL (tests/standin/: the bundles' kernels on the CPU,
  # 4 GPUs), so that they run where there is no GPU too. The stand-in finds a module's kernels among the bundles
  # under the run's temporary folder; one bundle there serves modules of the collective kernels alone.
  local work
  work=$(mktemp -d)
  cc -shared -fPIC -O1 -Wall -Wextra -Werror -o "$work/libstandin.so" \
    tests/standin/cuda_standin.c tests/standin/nccl_standin.c tests/standin/streams_standin.c -ldl -lpthread -lm
  bin/mplc compile examples/mlp.mpl -o "$work/collectives.mplc" >/dev/null
  run_suite "the CUDA tests on the stand-in driver" "$cuda" TMPDIR="$work" MPLC_CUDA_LIBRARY="$work/libstandin.so" \
    MPLC_NCCL_LIBRARY="$work/libstandin.so" MPLC_STANDIN_GPUS=4 MPLC_STANDIN_BUNDLES="$work" MPLC_STANDIN_TIMEOUT=60
  rm -rf "$work"
  if [ "$passed" -eq 0 ]; then echo "error: no test ran" >&2; failed=$((failed + 1)); fi
  if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi
  echo "$passed passed, $failed failed, $skipped skipped"
  [ "$failed" -eq 0 ]
}

cmd=${1:-build}
case "$cmd" in
  build|"") setup; build ;;
  run)
    shift
    [ $# -ge 1 ] || { echo "usage: ./build.sh run FILE.mpl [mplc run options]" >&2; exit 1; }
    setup
    build  # incremental: a no-op when nothing changed
    exec bin/mplc run "$@" ;;
  test) setup; fetch_ptxas; build; run_tests ;;
  format) setup; dotnet csharpier format . ;;
  bench) setup; fetch_ptxas; build; dotnet run --project tests/Bench/Bench.csproj -c "$CONFIG" -- "${@:2}" ;;
  publish)
    setup
    log "publishing mplrun with NativeAOT to bin/publish/"
    dotnet publish runtime/Mplrun/Mplrun.csproj -c "$CONFIG" -r linux-x64 -p:PublishAot=true -o bin/publish \
      -nologo -v quiet -clp:ErrorsOnly
    ls -la bin/publish/mplrun ;;
  gpu-kit)
    # What a GPU node without .NET needs: the NativeAOT mplrun and bundles of the examples and the GPU benchmarks.
    "$0" publish
    mkdir -p bin/gpu-kit
    for f in examples/*.mpl tests/Bench/gpu/*.mpl; do
      n=$(basename "$f" .mpl)
      rm -rf "bin/gpu-kit/$n.mplc"
      bin/mplc compile "$f" -o "bin/gpu-kit/$n.mplc" --gpu sm_80 >/dev/null
    done
    log "bin/gpu-kit: $(ls bin/gpu-kit | tr '\n' ' ')" ;;
  *) echo "usage: ./build.sh [build|run FILE [args]|test|bench|publish|gpu-kit]" >&2; exit 1 ;;
esac
