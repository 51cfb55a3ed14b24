# syntax=docker/dockerfile:1
#
# The jetcc-worker image (docker-compose.yml builds it as jetcc-worker:local).
#
#   docker build --build-arg RUST_VERSION=1.95.0 -t jetcc-worker .
#
# RUST_VERSION must be the clients' exact Rust version: a worker takes a job only when its
# rustc's `rustc -vV` equals the client's, and it offers the rustc of this image (the
# official rust image's rustup toolchain, identical to `rustup toolchain install <version>`
# on a client of the same host triple).
ARG RUST_VERSION=1.95.0

FROM rust:${RUST_VERSION}-slim-bookworm AS build
WORKDIR /src
COPY . .
# The C in the dependency tree (aws-lc-sys under rustls' aws-lc-rs, ring, blake3's assembly)
# is built with the `cc` crate and the image's gcc: on Linux x86_64 and aarch64 aws-lc-sys
# compiles with cc and ships pregenerated bindings, so no cmake, clang or nasm is needed.
# jetcc itself goes in too, for `docker compose exec worker jetcc --dist-status`.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p jetcc-worker -p jetcc \
    && mkdir -p /out \
    && cp target/release/jetcc-worker target/release/jetcc /out/

# The same image again: jobs run this image's rustc (`rustc` on PATH, resolved to the
# toolchain's real binary), so the runtime needs the toolchain, not just a libc.
FROM rust:${RUST_VERSION}-slim-bookworm
COPY --from=build /out/jetcc-worker /out/jetcc /usr/local/bin/
# The worker's job roots, blob cache and toolchain memo: <JETCC_DIR>/worker. Left in the
# container (not a shared volume): each worker clears its own jobs dir when it starts.
ENV JETCC_DIR=/var/cache/jetcc
RUN mkdir -p /var/cache/jetcc
# Root, deliberately. As root the worker runs every job's rustc as `nobody` (so RLIMIT_NPROC
# bounds a job's processes and a job cannot touch the worker's files) and builds the job's
# namespaces with real privileges. A non-root worker would need an unprivileged user
# namespace instead, which Docker's default seccomp profile forbids. The container, not
# USER, is the worker's boundary; docker-compose.yml lists what it needs.
CMD ["jetcc-worker"]
