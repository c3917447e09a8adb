# syntax=docker/dockerfile:1
# Three stages: build with the full toolchain; fill Node's compile cache with the runtime's own
# node; run on distroless Node with production dependencies only. The build stage is
# scripts/image/build.sh and the cache stage scripts/image/fill-compile-cache.js, which the test
# suite runs on a clean copy (test/deploy/image.test.ts; no Docker engine is needed to prove
# the steps).

# The runtime image, named once: the compile cache is only valid for the node binary that made it.
ARG RUNTIME_IMAGE=gcr.io/distroless/nodejs22-debian12:nonroot

FROM node:22-bookworm-slim AS build
WORKDIR /src
COPY . .
RUN bash scripts/image/build.sh /src /app

# The compile cache (NODE_COMPILE_CACHE): V8 code for every module the app tree loads, so a pod's
# start reads it instead of compiling (docs/PERFORMANCE.md, "Cold start"). Made by the runtime's
# node with the ENTRYPOINT's flags and as its uid: node keys the cache by its version, its flags
# and the uid, and ignores a cache made otherwise (a slower start, nothing worse). No shell here:
# exec-form RUN.
FROM ${RUNTIME_IMAGE} AS compile-cache
COPY --from=build /app /app
COPY --from=build /src/scripts/image/fill-compile-cache.js /fill-compile-cache.js
USER 10001:10001
ENV NODE_COMPILE_CACHE=/tmp/compile-cache
RUN ["/nodejs/bin/node", "--heap-growing-percent=50", "/fill-compile-cache.js", "/app"]

# Distroless: no shell, no package manager; Node is PID 1 and the CLI handles SIGTERM itself
# (stop taking events, finish in-flight ones, close pools, exit 0 within SHUTDOWN_GRACE_MS).
FROM ${RUNTIME_IMAGE}
ENV NODE_ENV=production
COPY --from=build /app /app
# Root-owned and read-only like the rest of /app; readable by any uid (node writes its cache files 0600).
COPY --from=compile-cache --chmod=0755 /tmp/compile-cache /app/.compile-cache
ENV NODE_COMPILE_CACHE=/app/.compile-cache
WORKDIR /app
# Any non-root uid works (files are root-owned and read-only); the Helm chart pins 10001, the uid
# the compile cache was made for (another uid starts without it).
USER 10001:10001
EXPOSE 8080
# The CLI is the entry point: `serve` (default), `migrate`, `settings …`, `keys …`, `events send …`.
ENTRYPOINT ["/nodejs/bin/node", "--heap-growing-percent=50", "/app/dist/cli.js"]
CMD ["serve"]
