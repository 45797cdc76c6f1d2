#!/usr/bin/env bash
# ParallelCompiler build script.
#   ./build.sh                 set up (apt, npm, NuGet) and build Release; leaves bin/mplc
#   ./build.sh run FILE [..]   build if needed, then: mplc run FILE [..]
#   ./build.sh test            set up, build, run every test suite; ends with "N passed, N failed"
#   ./build.sh bench           build, then run the benchmarks (figures go in docs/PERFORMANCE.md by hand)
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
  if [ ${#need_apt[@]} -gt 0 ]; then
    log "installing ${need_apt[*]}"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
  fi
  command -v dotnet >/dev/null 2>&1 || { echo "error: the .NET 10 SDK is required (dotnet not found)" >&2; exit 1; }
  if [ ! -x grammar/node_modules/.bin/antlr-ng ]; then
    log "installing the ANTLR tool (npm ci in grammar/)"
    (cd grammar && npm ci --no-audit --no-fund --loglevel=error)
  fi
}

build() {
  log "restoring and building ($CONFIG)"
  dotnet build ParallelCompiler.sln -c "$CONFIG" -nologo -v quiet -clp:ErrorsOnly
  mkdir -p bin
  cat > bin/mplc <<LAUNCH
#!/usr/bin/env bash
exec dotnet "$ROOT/compiler/Mplc/bin/$CONFIG/net10.0/mplc.dll" "\$@"
LAUNCH
  chmod +x bin/mplc
}

run_tests() {
  local passed=0 failed=0 skipped=0 status=0
  local out
  out=$(mktemp)
  log "running the xunit suite"
  set +e
  dotnet test tests/ParallelCompiler.Tests/ParallelCompiler.Tests.csproj -c "$CONFIG" --no-build -nologo \
    --logger "console;verbosity=minimal" 2>&1 | tee "$out"
  status=${PIPESTATUS[0]}
  set -e
  # The xunit console summary: "Failed!  - Failed: 1, Passed: 10, Skipped: 0, Total: 11, ..."
  local line
  line=$(grep -E '(Passed|Failed)! +- Failed: +[0-9]+, Passed: +[0-9]+' "$out" | tail -1 || true)
  if [ -n "$line" ]; then
    failed=$(sed -E 's/.*Failed: +([0-9]+).*/\1/' <<<"$line")
    passed=$(sed -E 's/.*Passed: +([0-9]+).*/\1/' <<<"$line")
    skipped=$(sed -E 's/.*Skipped: +([0-9]+).*/\1/' <<<"$line")
  else
    failed=1
  fi
  rm -f "$out"
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
  test) setup; build; run_tests ;;
  bench) setup; build; dotnet run --project tests/Bench/Bench.csproj -c "$CONFIG" -- "${@:2}" ;;
  *) echo "usage: ./build.sh [build|run FILE [args]|test|bench]" >&2; exit 1 ;;
esac
