# streamlab tasks. `just` lists them.

set shell := ["bash", "-euo", "pipefail", "-c"]

# Install what the local backend needs and is missing: tansu 0.6.0 with streamlab's storage
# patch (built once per patch version, about 10 minutes; see tools/tansu/install).
install-tools:
    @tools/tansu/install >/dev/null

# Install the Node.js and Python packages the client matrix and the examples use
# (tests/clients, examples/*), into node_modules/ and .venv/.
install-clients:
    #!/usr/bin/env bash
    set -euo pipefail
    for dir in tests/clients examples/node-producer; do
        [ -d "$dir/node_modules" ] || npm ci --prefix "$dir" --no-audit --no-fund --loglevel=error
    done
    [ -x .venv/bin/python ] || python3 -m venv .venv
    .venv/bin/python -m pip install -q --disable-pip-version-check -r tests/clients/requirements.txt -r examples/python-producer/requirements.txt

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
    cargo run --quiet -- sandbox {{ARGS}}

# Every test: unit, property, CLI and end-to-end (the command CI runs).
test: install-tools install-clients
    cargo test --all-targets -- --test-threads 6

# The end-to-end tests only.
test-e2e: install-tools install-clients
    cargo test --test e2e --test cli --test fixtures --test own_pipeline --test clients --test examples -- --test-threads 6

# Soak: 100,000 events, 10% of S3 PUTs failing, 2 broker outages, 5 SIGKILLs of delivery; prints the figures.
soak *ARGS: install-tools
    cargo run --quiet -- soak {{ARGS}}

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

# Measure on this machine, in one run: the consume and PUT ceilings, delivery per format against
# them (CPU, peak RSS), the engine alone, a hand-written Python baseline, and the test loop.
# Prints a table against the targets; JSON under target/bench/.
bench *ARGS: install-tools
    #!/usr/bin/env bash
    set -euo pipefail
    [ -x .venv/bin/python ] || python3 -m venv .venv
    .venv/bin/python -m pip install -q --disable-pip-version-check -r tools/bench/requirements.txt
    cargo build --release --quiet
    target/release/streamlab bench {{ARGS}}
