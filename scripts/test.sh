#!/usr/bin/env bash
# The whole Vaart test suite, as CI runs it (.ci/run execs this script).
#
# Idempotent: installs only what is missing (Debian packages, a Python venv in .venv), then runs,
# in this order:
#   1. cargo fmt --check            4. criterion benches with tiny inputs (so they cannot rot)
#   2. cargo clippy -D warnings     5. pytest (tests/python, against the real vaart binary)
#   3. cargo build (all targets)    6. cargo nextest (or cargo test), last, so that the output
#                                      ends with the test runner's own summary
# Every step runs even if an earlier one failed; the script exits non-zero if any failed.
# With CI=true it prints a header and the time taken for each step.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

ci="${CI:-false}"
suite_start_s=$SECONDS
failed_steps=()
step_summaries=()
step_count_total=8
step_index=0

log() { printf '==> %s\n' "$*" >&2; }

# --- installing what the suite needs ------------------------------------------------------------
# Note: these functions run under `run_step`, i.e. on the left of `||`, where bash ignores
# `set -e`; every command that can fail is therefore checked explicitly.

# Runs apt-get as root, through sudo when we are not root and sudo exists.
apt_get() {
    if [[ $(id -u) -eq 0 ]]; then
        DEBIAN_FRONTEND=noninteractive apt-get "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo DEBIAN_FRONTEND=noninteractive apt-get "$@"
    else
        log "not root and no sudo: cannot run apt-get $*"
        return 1
    fi
}

apt_updated=false
apt_install() {
    if [[ $apt_updated == false ]]; then
        apt_get update -qq || return
        apt_updated=true
    fi
    apt_get install -y -qq --no-install-recommends "$@"
}

# Debian packages the suite needs, each as "probe:package". The probe is a command name, or
# "dpkg" to ask dpkg whether the package itself is installed (libraries have no command).
#   kcat                    the reference Kafka command-line client, used by end-to-end tests
#   g++, make               rdkafka-sys builds its bundled librdkafka with librdkafka's own
#                           configure script and `make libs`, which also compiles the C++ wrapper
#   pkg-config, zlib1g-dev  libz-sys links the system zlib instead of compiling its own copy
required_packages=(
    "kcat:kcat"
    "g++:g++"
    "make:make"
    "pkg-config:pkg-config"
    "dpkg:zlib1g-dev"
)

install_system_packages() {
    local missing=() entry probe package
    for entry in "${required_packages[@]}"; do
        probe="${entry%%:*}"
        package="${entry#*:}"
        if [[ $probe == dpkg ]]; then
            dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
        else
            command -v "$probe" >/dev/null 2>&1 || missing+=("$package")
        fi
    done
    if ((${#missing[@]} == 0)); then
        log "all Debian packages present"
        return 0
    fi
    log "installing Debian packages: ${missing[*]}"
    apt_install "${missing[@]}"
}

# The Python venv for tests/python; reinstalls requirements only when the file changed.
setup_python_venv() {
    local requirements="tests/python/requirements.txt"
    local stamp=".venv/.requirements.sha256"
    if [[ ! -x .venv/bin/python ]]; then
        log "creating Python venv in .venv"
        if ! python3 -m venv .venv; then
            # Debian's own python3 ships venv (and ensurepip) in a separate package.
            rm -rf .venv
            apt_install python3-venv || return
            python3 -m venv .venv || return
        fi
    fi
    local wanted
    wanted="$(sha256sum "$requirements" | cut -d' ' -f1)" || return
    if [[ -f $stamp && "$(cat "$stamp")" == "$wanted" ]]; then
        log "Python test requirements up to date"
        return 0
    fi
    log "installing Python test requirements"
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -r "$requirements" ||
        return
    printf '%s\n' "$wanted" >"$stamp"
}

# --- the steps -----------------------------------------------------------------------------------

step_header() {
    step_index=$((step_index + 1))
    if [[ $ci == true ]]; then
        printf '\n========== [%d/%d] %s ==========\n' "$step_index" "$step_count_total" "$1" >&2
    fi
}

# run_step NAME COMMAND...: runs one step and records its result instead of stopping the suite.
run_step() {
    local name="$1"
    shift
    step_header "$name"
    local start_s=$SECONDS status=0
    "$@" || status=$?
    local elapsed_s=$((SECONDS - start_s))
    if ((status != 0)); then
        failed_steps+=("$name")
        step_summaries+=("$(printf 'FAILED %5ss  %s (exit %s)' "$elapsed_s" "$name" "$status")")
    else
        step_summaries+=("$(printf 'ok     %5ss  %s' "$elapsed_s" "$name")")
    fi
    if [[ $ci == true ]]; then
        log "$name: exit $status after ${elapsed_s}s"
    fi
    return 0
}

# cargo bench passes the arguments after `--` to every benchmark binary it runs, and libtest
# harnesses (lib, bin and test targets run as benches) reject criterion's flags; so only the
# `[[bench]]` targets run (`--bench '*'`). A workspace without any bench target has nothing to run.
run_criterion_benches() {
    local metadata
    metadata="$(cargo metadata --no-deps --format-version 1)" || return
    if ! grep -q '"kind":\["bench"\]' <<<"$metadata"; then
        log "no criterion bench targets in the workspace"
        return 0
    fi
    cargo bench --workspace --bench '*' -- \
        --warm-up-time 0.05 --measurement-time 0.1 --sample-size 10
}

# pytest exits 5 when it collected no test: that is a failure here, never a pass.
run_pytest() {
    local status=0
    VAART_BIN="${VAART_BIN:-${CARGO_TARGET_DIR:-$repo_root/target}/debug/vaart}" \
        .venv/bin/python -m pytest tests/python -q || status=$?
    if ((status == 5)); then
        log "pytest collected no tests: counted as a failure"
    fi
    return "$status"
}

run_cargo_tests() {
    if cargo nextest --version >/dev/null 2>&1; then
        cargo nextest run --workspace --no-fail-fast
    else
        cargo test --workspace --no-fail-fast
    fi
}

run_step "install Debian packages" install_system_packages
run_step "python venv" setup_python_venv
run_step "cargo fmt" cargo fmt --all -- --check
run_step "cargo clippy" cargo clippy --workspace --all-targets -- -D warnings
run_step "cargo build" cargo build --workspace --all-targets
run_step "criterion benches (tiny inputs)" run_criterion_benches
run_step "pytest" run_pytest

# The summary of the earlier steps comes before the last step, so that the test runner's own
# summary stays the last thing printed when everything passes.
printf '\nsteps so far (%ss):\n' "$((SECONDS - suite_start_s))" >&2
printf '  %s\n' "${step_summaries[@]}" >&2

step_header "cargo tests"
tests_status=0
run_cargo_tests || tests_status=$?
if ((tests_status != 0)); then
    failed_steps+=("cargo tests")
fi
if ((${#failed_steps[@]} > 0)); then
    log "FAILED: ${failed_steps[*]} (total $((SECONDS - suite_start_s))s)"
    exit 1
fi
