# syntax=docker/dockerfile:1
#
# paylink-mcp over streamable HTTP, for a container platform behind a TLS-terminating proxy.
#
#   docker build -t paylink-mcp .
#   docker run --rm -p 8080:8080 -e PAYLINK_ALLOWED_HOSTS=mcp.example.com paylink-mcp
#
# Every caller sends its own key as `Authorization: Bearer ...`; the image holds no secret.
# Settings come from PAYLINK_* environment variables (see `paylink-mcp --help`).

# ---- build ------------------------------------------------------------------------------------
# The Rust version is the crate's rust-version; bookworm matches the runtime's glibc (Debian 12).
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# --locked: build exactly Cargo.lock. The cache mounts keep the registry and compiled
# dependencies between builds; the binary is copied out because the target cache is not part of
# the image layer.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin paylink-mcp \
 && install -D -m 0755 target/release/paylink-mcp /out/paylink-mcp

# ---- runtime ----------------------------------------------------------------------------------
# distroless/cc: glibc, libgcc (unwinding) and CA certificates, no shell, no package manager;
# the :nonroot tag runs as uid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/paylink-mcp /usr/local/bin/paylink-mcp
USER nonroot:nonroot

# The Host allow-list (DNS-rebinding protection): set it to the public name(s) clients use,
# comma-separated, e.g. `-e PAYLINK_ALLOWED_HOSTS=mcp.example.com`. The default here accepts
# only loopback names, which is what `docker run -p` on this machine sends (the server warns about
# it at start-up); any other Host on /mcp is 403. /healthz is not behind this check.
ENV PAYLINK_ALLOWED_HOSTS=localhost,127.0.0.1 \
    PAYLINK_LOG_FORMAT=json \
    PAYLINK_HEALTHCHECK_URL=http://127.0.0.1:8080/healthz

EXPOSE 8080

# The probe is the binary itself (no curl in this image): GET /healthz, exit 0 on 200, else 1.
# Its own timeout (3 s) ends before Docker's.
HEALTHCHECK --interval=30s --timeout=5s --start-period=5s --retries=3 \
    CMD ["/usr/local/bin/paylink-mcp", "healthcheck"]

ENTRYPOINT ["/usr/local/bin/paylink-mcp"]
# 0.0.0.0 so the platform can reach the port; plain HTTP is accepted only because a proxy in
# front terminates TLS (--behind-tls-proxy). Serving TLS itself: --tls-cert/--tls-key instead.
CMD ["http", "--bind", "0.0.0.0:8080", "--behind-tls-proxy"]
