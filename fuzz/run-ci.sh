#!/usr/bin/env bash
# Builds every fuzz target once and runs each for a bounded time from its seeds (copied
# to a temporary corpus, so the repo stays clean). Fails on any crash, leak or timeout;
# prints each target's run count. Usage: fuzz/run-ci.sh [seconds per target, default 20]
#
# Two ways to run, by FUZZ_SEED:
# - unset (CI): libFuzzer's seed is 1 and each target stops after a fixed number
#   of inputs (its `runs` below, about 15 s here; the time limit is then 3x the given
#   seconds, so a slower machine still gets through them), so a run tries the same
#   inputs on every machine: CI fails on a regression of a seed or of what these runs
#   reach, never on a bug that a luckier draw found in old code. So CI no longer
#   searches; that is the second way, and a session's job before it lands:
# - `FUZZ_SEED=random` (or a number; libFuzzer reads 0 as random too): libFuzzer draws
#   (or takes) the seed and runs each target for the full time. Run it for minutes
#   before landing a change to a rewriter or a decoder; add what it finds to the
#   target's seeds once fixed.
#
# Only a stable toolchain exists: RUSTC_BOOTSTRAP=1 lets it take cargo-fuzz's nightly
# flags. `--sanitizer none`: panics and the targets' assertions are what is checked (all
# safe Rust; unsafe_code is forbidden in the workspace), and it builds far faster than
# AddressSanitizer. Debug assertions stay on (cargo-fuzz's default). `--codegen-units 16`
# (cargo-fuzz's default is 1): the build is most of the cost on two cores, and a few
# per cent fewer runs a second do not matter at 20 s a target. Build and run must pass the
# same flags, or `cargo fuzz run` builds again.
set -euo pipefail

cd "$(dirname "$0")"
secs="${1:-${FUZZ_SECONDS:-20}}"
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

# target:seeds:runs (runs: inputs tried with the fixed seed, about 15 s on this
# project's 2-core machine)
targets=(
    decode:seeds:600000
    decode_bin:seeds-bin:600000
    rewrite_html:seeds-html:5000
    rewrite_css:seeds-css:120000
    rewrite_url_scope:seeds-url:800000
    rewrite_headers:seeds-headers:320000
    public_path:seeds-path:400000
)
seed="${FUZZ_SEED:-fixed}"

flags=(--sanitizer none --codegen-units 16)
build_start=$SECONDS
cargo fuzz build "${flags[@]}"
echo "fuzz: built in $((SECONDS - build_start)) s"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
failed=()
for entry in "${targets[@]}"; do
    target="${entry%%:*}" rest="${entry#*:}"
    seeds="${rest%%:*}" runs="${rest#*:}"
    if ! [[ "$runs" =~ ^[0-9]+$ ]] || [ ! -d "$seeds" ]; then
        echo "fuzz: bad entry $entry (want target:seeds-dir:runs)" >&2
        exit 64
    fi
    # A machine over 3x slower than this one still stops on time: the same inputs, fewer.
    case "$seed" in
        fixed) bound=(-seed=1 -runs="$runs") limit=$((secs * 3)) ;;
        random) bound=() limit=$secs ;;
        *) bound=(-seed="$seed") limit=$secs ;;
    esac
    mkdir -p "$work/$target/corpus" "$work/$target/artifacts"
    cp -r "$seeds/." "$work/$target/corpus/"
    log="$work/$target/log"
    # -timeout: one input taking over 10 s is a hang; -rss_limit_mb: a leak or a
    # blow-up; -max_len: pages of up to 64 KiB, enough to span the rewriters' chunks.
    if cargo fuzz run "${flags[@]}" "$target" "$work/$target/corpus" -- \
        -max_total_time="$limit" ${bound[@]+"${bound[@]}"} -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
        -artifact_prefix="$work/$target/artifacts/" -print_final_stats=1 \
        >"$log" 2>&1; then
        runs="$(grep -o 'Done [0-9]* runs in [0-9]* second(s)' "$log" | tail -1)"
        echo "fuzz $target: ok, ${runs:-no run count}"
    else
        echo "fuzz $target: FAILED (seed $seed)" >&2
        grep -E -A20 'panicked|ERROR: libFuzzer|SUMMARY' "$log" | head -40 >&2 || tail -40 "$log" >&2
        # Kept for triage (fuzz/artifacts is ignored by git): add a minimized one to
        # the seeds once fixed.
        mkdir -p "artifacts/$target"
        for a in "$work/$target/artifacts/"*; do
            [ -e "$a" ] || continue
            cp "$a" "artifacts/$target/"
            echo "  input ($(basename "$a")): $(head -c 600 "$a" | od -An -c | tr -s ' ' | head -c 1500)" >&2
        done
        failed+=("$target")
    fi
done
if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzz: crashes in ${failed[*]}" >&2
    exit 1
fi
