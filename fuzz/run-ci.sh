#!/usr/bin/env bash
# Builds every fuzz target once and runs each for a bounded time from its seeds (copied
# to a temporary corpus, so the repo stays clean). Fails on any crash, leak or timeout;
# prints each target's run count. Usage: fuzz/run-ci.sh [seconds per target, default 20]
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

# target:seeds
targets=(
    decode:seeds
    decode_bin:seeds-bin
    rewrite_html:seeds-html
    rewrite_css:seeds-css
    rewrite_url_scope:seeds-url
    rewrite_headers:seeds-headers
    public_path:seeds-path
)

flags=(--sanitizer none --codegen-units 16)
build_start=$SECONDS
cargo fuzz build "${flags[@]}"
echo "fuzz: built in $((SECONDS - build_start)) s"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
failed=()
for entry in "${targets[@]}"; do
    target="${entry%%:*}" seeds="${entry#*:}"
    mkdir -p "$work/$target/corpus" "$work/$target/artifacts"
    cp -r "$seeds/." "$work/$target/corpus/"
    log="$work/$target/log"
    # -timeout: one input taking over 10 s is a hang; -rss_limit_mb: a leak or a
    # blow-up; -max_len: pages of up to 64 KiB, enough to span the rewriters' chunks.
    if cargo fuzz run "${flags[@]}" "$target" "$work/$target/corpus" -- \
        -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
        -artifact_prefix="$work/$target/artifacts/" -print_final_stats=1 \
        >"$log" 2>&1; then
        runs="$(grep -o 'Done [0-9]* runs in [0-9]* second(s)' "$log" | tail -1)"
        echo "fuzz $target: ok, ${runs:-no run count}"
    else
        echo "fuzz $target: FAILED" >&2
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
