# syntax=docker/dockerfile:1
#
# One image, two programs: `ingest` and `worker` (plus `worker migrate`,
# `worker dlq ...`). No ENTRYPOINT on purpose: docker compose and Kubernetes
# name the program as the command. No secrets in the image: everything comes
# from the environment at run time.

# ---- skeleton: the workspace's manifests with every Rust file stubbed --------
# Its output changes only when a manifest, the lock file or the set of files
# changes, so the dependency layer below is reused across source edits. Works
# for any workspace member without listing them here.
FROM rust:1.95-bookworm AS skeleton
WORKDIR /src
COPY . .
RUN find . -type f -name '*.rs' -exec sh -c 'for f; do echo "fn main() { }" > "$f"; done' sh {} + \
    && find . -type f ! -name '*.rs' ! -name Cargo.toml ! -name Cargo.lock -delete

# ---- build --------------------------------------------------------------------
FROM rust:1.95-bookworm AS builder
WORKDIR /src
# Dependency cache: compile every dependency against the real manifests and
# lock file, with stub crates.
COPY --from=skeleton /src ./
RUN cargo build --release --locked -p ingest -p worker
# The real sources. Touch them: COPY keeps the files' modification times, which
# may be older than the stub build, and cargo would then keep the stubs.
COPY . .
RUN find . -path ./target -prune -o -type f -name '*.rs' -exec touch {} + \
    && cargo build --release --locked -p ingest -p worker \
    && strip target/release/ingest target/release/worker

# ---- run ----------------------------------------------------------------------
FROM debian:bookworm-slim AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin app \
    && mkdir -p /var/lib/ingest/spool \
    && chown 10001:10001 /var/lib/ingest/spool \
    && chmod 0700 /var/lib/ingest/spool \
    && ln -s spool /var/lib/ingest/ingest-spool
# ingest's spool: mount a volume here so that callbacks waiting for RabbitMQ
# outlive the container. It holds phone numbers: the app user's alone. The
# programs run in /var/lib/ingest, where INGEST_SPOOL_DIR's default
# (`ingest-spool`) links to this volume, so the image spools on it whether
# or not INGEST_SPOOL_DIR is set.
VOLUME /var/lib/ingest/spool
WORKDIR /var/lib/ingest
COPY --from=builder /src/target/release/ingest /src/target/release/worker /usr/local/bin/
USER 10001:10001
# ingest listens on 8080, worker on 8081 (INGEST_ADDR / WORKER_ADDR).
EXPOSE 8080 8081
# Deliberately no ENTRYPOINT: the command is the program, `ingest` or `worker`.
# Without one the image only prints ingest's usage.
CMD ["ingest", "--help"]
