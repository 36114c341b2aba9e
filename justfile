# streamlab tasks. `just` lists them.

set shell := ["bash", "-euo", "pipefail", "-c"]

tansu_version := "0.6.0"

# List the recipes.
default:
    @just --list

# Install what the local backend needs and is missing (tansu, the Kafka-compatible broker).
install-tools:
    #!/usr/bin/env bash
    set -euo pipefail
    export PATH="$HOME/.cargo/bin:$PATH"
    if tansu --version 2>/dev/null | grep -q "{{tansu_version}}"; then
        exit 0
    fi
    echo "installing tansu {{tansu_version}} (Kafka-compatible broker; builds once, about 8 minutes)" >&2
    cargo install tansu@{{tansu_version}} --locked --features dynostore

# Install the independent decoders the encoding tests compare against (Debian/Ubuntu, as root).
install-decoders:
    #!/usr/bin/env bash
    set -euo pipefail
    missing=()
    [ -f /usr/share/java/snappy-java.jar ] || missing+=(libsnappy-java)
    command -v java >/dev/null || missing+=(default-jre-headless)
    command -v unzip >/dev/null || missing+=(unzip)
    if [ ${#missing[@]} -gt 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
    fi
    python3 -c "import snappy; snappy.HadoopStreamDecompressor" 2>/dev/null || python3 -m pip install -q python-snappy==0.7.3

# Run the whole pipeline locally with live progress; e.g. `just sandbox --duration 30s`.
sandbox *ARGS: install-tools
    PATH="$HOME/.cargo/bin:$PATH" cargo run --quiet -- sandbox {{ARGS}}

# Every test: unit, property, CLI and end-to-end (the command CI runs).
test: install-tools
    PATH="$HOME/.cargo/bin:$PATH" cargo test --all-targets -- --test-threads 6

# The end-to-end tests only.
test-e2e: install-tools
    PATH="$HOME/.cargo/bin:$PATH" cargo test --test e2e --test cli --test fixtures -- --test-threads 6

# Soak: 100,000 events, 10% of S3 PUTs failing, 2 broker outages, 5 SIGKILLs of delivery; prints the figures.
soak *ARGS: install-tools
    PATH="$HOME/.cargo/bin:$PATH" cargo run --quiet -- soak {{ARGS}}

# Fuzz the spec parser, prefix expressions and record decoders (default 10 minutes per target).
fuzz SECONDS="600":
    STREAMLAB_FUZZ_SECONDS={{SECONDS}} cargo test --test fuzz -- --nocapture --test-threads 3

# Check stream spec files as AWS would.
validate *SPECS:
    cargo run --quiet -- validate {{SPECS}}

# Formatting and lints.
lint:
    cargo fmt --check
    cargo clippy --all-targets -- -D warnings
