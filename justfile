# streamlab tasks. `just` lists them.

set shell := ["bash", "-euo", "pipefail", "-c"]

# Install what the local backend needs and is missing: tansu 0.6.0 with streamlab's storage
# patch (built once per patch version, about 10 minutes; see tools/tansu/install).
install-tools:
    @tools/tansu/install >/dev/null

# AWS's Node.js runtime interface client compiles native code (see install-build-tools).
# Install the Node.js and Python packages of the client matrix, the examples and the Lambda tests.
install-clients:
    #!/usr/bin/env bash
    set -euo pipefail
    for dir in tests/clients examples/node-producer examples/node-transform; do
        [ -d "$dir/node_modules" ] && continue
        if [ "$dir" = examples/node-transform ] && ! command -v cmake >/dev/null; then
            echo "examples/node-transform needs cmake, autoconf, automake and libtool to build aws-lambda-ric; run \`just install-build-tools\` (as root), or skip it: its test reports it as not checked" >&2
            continue
        fi
        npm ci --prefix "$dir" --no-audit --no-fund --loglevel=error
    done
    [ -x .venv/bin/python ] || python3 -m venv .venv
    .venv/bin/python -m pip install -q --disable-pip-version-check -r tests/clients/requirements.txt \
        -r examples/python-producer/requirements.txt -r examples/python-transform/requirements.txt \
        -r tests/readers/requirements.txt

# awslambdaric builds native code when no wheel fits, aws-lambda-ric always.
# Install what the Lambda runtime interface clients need to build (Debian/Ubuntu, as root).
install-build-tools:
    #!/usr/bin/env bash
    set -euo pipefail
    missing=()
    for tool in g++:g++ make:make cmake:cmake autoreconf:autoconf automake:automake libtoolize:libtool; do
        command -v "${tool%%:*}" >/dev/null || missing+=("${tool##*:}")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
    fi

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
    cargo test --test e2e --test cli --test fixtures --test own_pipeline --test clients --test examples --test lambda -- --test-threads 6

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
