# syntax=docker/dockerfile:1
# Multi-stage build: compile with both database backends, run as a non-root user.
FROM rust:1-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends libpq-dev pkg-config nodejs npm \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --features postgres --bin sasnp

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends libpq5 ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin sasnp \
 && mkdir -p /data /app && chown sasnp /data
COPY --from=build /src/target/release/sasnp /usr/local/bin/sasnp
COPY --from=build /src/geodata /app/geodata
# SQLite by default, in the volume; set SASNP_DATABASE_URL=postgres://… for PostgreSQL.
ENV SASNP_BIND=0.0.0.0:8080 \
    SASNP_DATABASE_URL=sqlite:///data/sasnp.db \
    SASNP_GEODATA_DIR=/app/geodata
VOLUME ["/data"]
USER sasnp
WORKDIR /data
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s --start-period=20s --retries=3 \
  CMD curl -fsS http://127.0.0.1:8080/health || exit 1
ENTRYPOINT ["sasnp"]
CMD ["serve"]
