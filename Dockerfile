# gemini-key-manager: a static musl binary in an empty image.
#
#   docker build -t gemini-key-manager .
#   docker run -d --name gkm -p 5000:5000 -v "$PWD/data:/data" -e PLACEHOLDER_TOKEN=your-token gemini-key-manager
#
# /data holds key.txt (yours, read-only is fine), key_usage.txt and the log; it must be writable by
# uid 10001 (`sudo chown -R 10001:10001 data`).

FROM rust:1-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends musl-tools && rm -rf /var/lib/apt/lists/*
RUN rustup target add x86_64-unknown-linux-musl
WORKDIR /src
COPY . .
RUN scripts/build-static.sh \
 && mkdir -p /out/data \
 && cp target/x86_64-unknown-linux-musl/release/gemini-key-manager /out/gemini-key-manager

FROM scratch
COPY --from=build /out/gemini-key-manager /gemini-key-manager
COPY --from=build --chown=10001:10001 /out/data /data
USER 10001:10001
WORKDIR /data
ENV LISTEN_HOST=0.0.0.0 \
    LISTEN_PORT=5000 \
    API_KEY_FILE=/data/key.txt \
    USAGE_DATA_FILE=/data/key_usage.txt \
    LOG_DIRECTORY=/data
EXPOSE 5000
VOLUME ["/data"]
HEALTHCHECK --interval=30s --timeout=5s --start-period=5s --retries=3 CMD ["/gemini-key-manager", "healthcheck"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/gemini-key-manager"]
CMD ["serve"]
