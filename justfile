# streamlab tasks. `just` lists them.

set shell := ["bash", "-euo", "pipefail", "-c"]

# Install what building streamlab needs and is missing: OpenSSL headers and pkg-config
# (librdkafka's TLS, SCRAM and MSK IAM; apt as root). The broker is built into streamlab.
install-tools:
    #!/usr/bin/env bash
    set -euo pipefail
    if ! { command -v pkg-config >/dev/null && pkg-config --exists openssl; }; then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
            apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libssl-dev pkg-config
        else
            echo "streamlab builds librdkafka with OpenSSL: install its headers and pkg-config" >&2
            echo "(Debian/Ubuntu: sudo apt-get install libssl-dev pkg-config; Fedora: openssl-devel pkgconf; macOS: brew install openssl pkg-config)" >&2
            exit 1
        fi
    fi

# `--backend localstack` runs LocalStack's S3 as a host process, no Docker; Python 3.13 needed.
# Install LocalStack 2026.3.0 into a venv under ~/.local/share/streamlab (or $STREAMLAB_HOME).
install-localstack:
    #!/usr/bin/env bash
    set -euo pipefail
    version=2026.3.0
    venv="${STREAMLAB_HOME:-$HOME/.local/share/streamlab}/localstack-$version"
    if "$venv/bin/python" -c "import localstack.runtime.main" 2>/dev/null; then exit 0; fi
    python=$(ls "$HOME"/.pyenv/versions/3.13.*/bin/python 2>/dev/null | tail -1 || true)
    [ -n "$python" ] || python=$(command -v python3.13 || true)
    if [ -z "$python" ]; then
        echo "LocalStack $version needs Python 3.13: install it (e.g. pyenv install 3.13) and run this again" >&2
        exit 1
    fi
    echo "installing LocalStack $version into $venv (about a minute)" >&2
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    # The sdist's runtime requirements pin what the runtime was tested with.
    "$python" -m pip download -q --disable-pip-version-check --no-deps --no-binary :all: "localstack-core==$version" -d "$tmp"
    tar xzf "$tmp/localstack_core-$version.tar.gz" -C "$tmp" "localstack_core-$version/requirements-runtime.txt"
    "$python" -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check "localstack-core[runtime]==$version" \
        -c "$tmp/localstack_core-$version/requirements-runtime.txt"

# AWS's Node.js runtime interface client compiles native code (see install-build-tools).
# Install the Node.js and Python packages of the client matrix, the examples and the Lambda tests,
# and the AWS CLI the Firehose API tests drive.
install-clients:
    #!/usr/bin/env bash
    set -euo pipefail
    for dir in tests/clients examples/node-producer examples/node-direct-put examples/node-transform; do
        [ -d "$dir/node_modules" ] && continue
        if [ "$dir" = examples/node-transform ] && ! command -v cmake >/dev/null; then
            echo "examples/node-transform needs cmake, autoconf, automake and libtool to build aws-lambda-ric; run \`just install-build-tools\` (as root), or skip it: its test reports it as not checked" >&2
            continue
        fi
        npm ci --prefix "$dir" --no-audit --no-fund --loglevel=error
    done
    # The AWS CLI (v1, from PyPI) pins its own botocore: a venv of its own.
    [ -x .venv-aws/bin/aws ] || { python3 -m venv .venv-aws && .venv-aws/bin/pip install -q --disable-pip-version-check awscli==1.46.3; }
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
test: install-tools
    #!/usr/bin/env bash
    set -euo pipefail
    # The client packages (npm, pip) install while Cargo compiles; the tests wait for both.
    mkdir -p target
    echo "installing the Node.js and Python client packages in the background (log: target/install-clients.log)" >&2
    just install-clients > target/install-clients.log 2>&1 & clients=$!
    built=0; cargo test --tests --no-run || built=$?
    if ! wait "$clients"; then cat target/install-clients.log >&2; echo "just install-clients failed (log above)" >&2; exit 1; fi
    [ "$built" = 0 ] || exit "$built"
    # Two at once: the integration binary's tests mostly wait on their stacks, so the
    # rest runs beside them: the unit tests, the two binaries that measure their own
    # process, and a team's own crate (its own workspace, no [patch]) on the Rust API.
    # That crate reuses every registry dependency built above; Cargo compiles
    # streamlab and the vendored crates again for it (a path package's build hash
    # includes its workspace root).
    side() {
        cargo test --lib --test scale --test bounded_inputs -- --test-threads 6 &&
        (cd examples/rust-team-tests && cargo test --target-dir ../../target)
    }
    echo "the unit tests, scale, bounded_inputs and examples/rust-team-tests run beside the integration tests (log: target/test-side.log)" >&2
    side > target/test-side.log 2>&1 & beside=$!
    tested=0; cargo test --test integration -- --test-threads 6 || tested=$?
    besides=0; wait "$beside" || besides=$?
    cat target/test-side.log >&2
    [ "$tested" = 0 ] || exit "$tested"
    [ "$besides" = 0 ] || { echo "the tests beside the integration tests failed (log above)" >&2; exit "$besides"; }

# The end-to-end tests only.
test-e2e: install-tools install-clients
    cargo test --test integration -- e2e:: cli:: fixtures:: own_pipeline:: clients:: examples:: lambda:: firehose_api:: --test-threads 6

# Soak: 100,000 events, 10% of S3 PUTs failing, 2 broker outages, 5 SIGKILLs of delivery; prints the figures.
soak *ARGS: install-tools
    cargo run --quiet -- soak {{ARGS}}

# Fuzz the spec parser, prefix expressions and record decoders (default 10 minutes per target).
fuzz SECONDS="600":
    STREAMLAB_FUZZ_SECONDS={{SECONDS}} cargo test --test integration -- fuzz:: --nocapture --test-threads 3

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
