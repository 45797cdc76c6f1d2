# ParallelCompiler build script for PowerShell: the same steps as build.sh.
#   ./build.ps1                 set up and build Release; leaves bin/mplc(.cmd)
#   ./build.ps1 run FILE [..]   build, then: mplc run FILE [..]
#   ./build.ps1 test            set up, build, run every test suite; ends with "N passed, N failed"
#   ./build.ps1 bench           build, then run the benchmarks
param(
    [Parameter(Position = 0)][string]$Command = "build",
    [Parameter(ValueFromRemainingArguments = $true)][string[]]$Rest
)
$ErrorActionPreference = "Stop"
Set-Location $PSScriptRoot
$Config = "Release"

function Log($msg) { Write-Host "[build] $msg" }

function Setup {
    if ($IsLinux) {
        $need = @()
        if (-not (Get-Command FileCheck-14 -ErrorAction SilentlyContinue)) { $need += "llvm-14-tools" }
        & /usr/bin/python3 -c "import numpy" 2>$null; if ($LASTEXITCODE -ne 0) { $need += "python3-numpy" }
        if (-not (Get-Command node -ErrorAction SilentlyContinue)) { $need += @("nodejs", "npm") }
        if ($need.Count -gt 0) {
            Log "installing $($need -join ' ')"
            $sudo = if ((id -u) -ne "0") { "sudo" } else { "" }
            $install = "DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $($need -join ' ') >/dev/null"
            & sh -c "$sudo apt-get update -qq && $install"
        }
    } else {
        foreach ($tool in @("node", "python")) {
            if (-not (Get-Command $tool -ErrorAction SilentlyContinue)) {
                throw "$tool is required; install it and rerun"
            }
        }
    }
    if (-not (Get-Command dotnet -ErrorAction SilentlyContinue)) {
        throw "the .NET 10 SDK is required (dotnet not found)"
    }
    dotnet tool restore | Out-Null  # the formatter (CSharpier), pinned in dotnet-tools.json
    if (-not (Test-Path grammar/node_modules/antlr-ng)) {
        Log "installing the ANTLR tool (npm ci in grammar/)"
        Push-Location grammar; npm ci --no-audit --no-fund --loglevel=error; $rc = $LASTEXITCODE; Pop-Location
        if ($rc -ne 0) { throw "npm ci failed" }
    }
}

function Build {
    Log "restoring and building ($Config)"
    dotnet build ParallelCompiler.sln -c $Config -nologo -v quiet -clp:ErrorsOnly
    if ($LASTEXITCODE -ne 0) { throw "build failed" }
    New-Item -ItemType Directory -Force bin | Out-Null
    $dll = Join-Path $PSScriptRoot "compiler/Mplc/bin/$Config/net10.0/mplc.dll"
    if ($IsWindows) { Set-Content bin/mplc.cmd "@dotnet `"$dll`" %*" }
    else { Set-Content bin/mplc "#!/usr/bin/env bash`nexec dotnet `"$dll`" `"`$@`"`n"; chmod +x bin/mplc }
}

function Run-Tests {
    Log "running the xunit suite"
    $out = dotnet test tests/ParallelCompiler.Tests/ParallelCompiler.Tests.csproj -c $Config --no-build -nologo `
        --logger "console;verbosity=minimal" 2>&1
    $status = $LASTEXITCODE
    $out | Write-Host
    $line = $out | Select-String -Pattern '(Passed|Failed)! +- Failed: +(\d+), Passed: +(\d+), Skipped: +(\d+)' |
        Select-Object -Last 1
    $passed = 0; $failed = 1; $skipped = 0
    if ($line) {
        $failed = [int]$line.Matches[0].Groups[2].Value
        $passed = [int]$line.Matches[0].Groups[3].Value
        $skipped = [int]$line.Matches[0].Groups[4].Value
    }
    Log "checking the C# formatting (dotnet csharpier check .)"
    dotnet csharpier check .
    if ($LASTEXITCODE -eq 0) { $passed++ }
    else { Write-Host "error: C# files not formatted: run ./build.ps1 format"; $failed++ }
    if ($passed -eq 0) { Write-Host "error: no test ran"; $failed++ }
    if ($status -ne 0 -and $failed -eq 0) { $failed = 1 }
    Write-Host "$passed passed, $failed failed, $skipped skipped"
    if ($failed -ne 0) { exit 1 }
}

switch ($Command) {
    "build" { Setup; Build }
    "run" {
        if (-not $Rest) { throw "usage: ./build.ps1 run FILE.mpl [mplc run options]" }
        Setup; Build
        dotnet "compiler/Mplc/bin/$Config/net10.0/mplc.dll" run @Rest; exit $LASTEXITCODE
    }
    "test" { Setup; Build; Run-Tests }
    "format" { Setup; dotnet csharpier format . }
    "bench" { Setup; Build; dotnet run --project tests/Bench/Bench.csproj -c $Config -- @Rest; exit $LASTEXITCODE }
    default { throw "usage: ./build.ps1 [build|run FILE [args]|test|format|bench]" }
}
