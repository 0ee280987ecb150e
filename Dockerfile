# syntax=docker/dockerfile:1
#
# One image for every partway process; docker-compose.yml picks the command:
#   partway migrate      apply database migrations and exit
#   partway-api          HTTP API + outbox relay (listens on PARTWAY_BIND, 0.0.0.0:8080 here)
#   partway-worker       job consumers + expiry sweeper (no port)
#   partway              the all-in-one embedded mode; also `partway keys create --owner NAME`
#
#   docker build -t partway:local .
#
# Configuration is environment only (PARTWAY_*; see DESIGN/README). Secrets can be given as files
# with the *_FILE variants (e.g. PARTWAY_MASTER_KEY_FILE=/run/secrets/master_key).

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

# ---- build -------------------------------------------------------------------------------------
FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS builder
WORKDIR /src
COPY . .
# The registry and target dir are cache mounts (kept between builds, not in the image), so the
# binaries are copied out in the same step. All three are binaries of the root package.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked -p partway \
      --bin partway --bin partway-api --bin partway-worker \
 && mkdir -p /out \
 && cp target/release/partway target/release/partway-api target/release/partway-worker /out/

# ---- runtime -----------------------------------------------------------------------------------
FROM debian:${DEBIAN_RELEASE}-slim
# ca-certificates: TLS to real S3/R2; curl: the compose healthcheck (GET /readyz).
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 partway \
 && useradd --system --uid 10001 --gid partway --home-dir /var/lib/partway --create-home \
      --shell /usr/sbin/nologin partway
COPY --from=builder /out/ /usr/local/bin/
USER 10001:10001
WORKDIR /var/lib/partway
ENV PARTWAY_BIND=0.0.0.0:8080 \
    PARTWAY_DATA_DIR=/var/lib/partway/data \
    PARTWAY_LOG_FORMAT=json
EXPOSE 8080
CMD ["partway-api"]
