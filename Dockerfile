# One image with the three binaries: wasmplug-operator and wasmplug-host (the
# chart runs each with its own command) and wasmplug, the plugin author's
# command (`kubectl exec … -- wasmplug check <package>`, or a CI job's image). Build from the repository root:
#
#   docker build -t <registry>/wasmplug:<tag> .
#
# With binaries built already (a directory holding wasmplug-operator,
# wasmplug-host and wasmplug as the build context), skip the Rust build stage:
#
#   docker build --build-arg BINARIES=prebuilt -f Dockerfile -t <image> <directory>
#
# CI builds it that way with buildah (e2e/scripts/dockerfile-image.sh) and runs
# the chart on a real node with the result (e2e/tests/node.rs).

# Where the binaries come from: the `build` stage, or `prebuilt` (the context).
ARG BINARIES=build

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p wasmplug-operator -p wasmplug-host -p wasmplug-cli \
 && install -D target/release/wasmplug-operator target/release/wasmplug-host target/release/wasmplug -t /out

FROM scratch AS prebuilt
COPY wasmplug-operator wasmplug-host wasmplug /out/

FROM ${BINARIES} AS binaries

FROM debian:bookworm-slim
# libgit2 links OpenSSL; the CA bundle serves https sources.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libssl3 \
 && rm -rf /var/lib/apt/lists/*
COPY --from=binaries /out/ /usr/local/bin/
# The chart's security context runs as 65532 with a read-only root filesystem;
# the operator writes only to the store volume and /tmp (an emptyDir).
USER 65532:65532
ENTRYPOINT []
CMD ["wasmplug-host", "--help"]
