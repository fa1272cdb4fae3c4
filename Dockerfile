# syntax=docker/dockerfile:1.7
# a2a-mcp container image: build with the Rust toolchain, run on distroless (glibc, no shell,
# no package manager) as a non-root user. Lint: `make lint-ops` (hadolint, in CI).
#   docker build -t a2a-mcp:0.1.0 .        (or: make docker)
# The image runs in production mode on 0.0.0.0, which refuses to start without an API key:
# create the first admin key on the volume once (its secret is printed once), then serve.
#   docker run --rm -v a2a-data:/data a2a-mcp:0.1.0 keys create --role admin --label first-admin
#   docker run -p 8787:8787 -p 3000:3000 -v a2a-data:/data a2a-mcp:0.1.0
# Kubernetes manifests: k8s/ (they set the same paths and user).

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-slim-bookworm AS build
WORKDIR /src
COPY . .
# The `dist` profile: fat LTO, one codegen unit, stripped. Caches keep rebuilds incremental.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --profile dist --locked --bin a2a-mcp \
    && install -D -m 0755 target/dist/a2a-mcp /out/usr/local/bin/a2a-mcp \
    && install -d -m 0750 -o 65532 -g 65532 /out/data \
    && cp -r data/catalog /out/catalog

# Static busybox for the HEALTHCHECK only (the runtime image has no HTTP client).
FROM busybox:1.37.0-musl AS probe

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/usr/local/bin/a2a-mcp /usr/local/bin/a2a-mcp
COPY --from=build /out/catalog /etc/a2a-mcp/catalog
COPY --from=build --chown=65532:65532 /out/data /data
COPY --from=probe /bin/busybox /usr/local/bin/busybox
# Listen on all interfaces inside the container; state and backups on the /data volume.
ENV A2A_ENV=production \
    A2A_DATA_DIR=/data/state \
    A2A_BACKUP_DIR=/data/backups \
    A2A_CATALOG_DIR=/etc/a2a-mcp/catalog \
    STREAM_HOST=0.0.0.0 \
    STREAM_PORT=8787 \
    METRICS_HOST=0.0.0.0 \
    METRICS_PORT=3000
# 8787: MCP /mcp, A2A, WebSocket /stream, REST /api/v1. 3000: /healthz, /readyz, /metrics.
EXPOSE 8787 3000
VOLUME ["/data"]
# distroless "nonroot" (65532); Kubernetes runs it with the same uid (k8s/base).
USER 65532:65532
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
    CMD ["/usr/local/bin/busybox", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:3000/healthz"]
# SIGTERM drains running jobs for A2A_SHUTDOWN_GRACE, then exits 0 (docker stop -t 30).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/a2a-mcp"]
CMD ["serve"]
