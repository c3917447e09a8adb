# syntax=docker/dockerfile:1
# Two stages: build with the full toolchain, run on distroless Node with production
# dependencies only. The build stage is scripts/image/build.sh, which the test suite runs on a
# clean copy (no Docker engine is needed to prove the steps).

FROM node:22-bookworm-slim AS build
WORKDIR /src
COPY . .
RUN bash scripts/image/build.sh /src /app

# Distroless: no shell, no package manager; Node is PID 1 and the CLI handles SIGTERM itself
# (stop taking events, finish in-flight ones, close pools, exit 0 within SHUTDOWN_GRACE_MS).
FROM gcr.io/distroless/nodejs22-debian12:nonroot
ENV NODE_ENV=production
COPY --from=build /app /app
WORKDIR /app
# Any non-root uid works (files are root-owned and read-only); the Helm chart pins 10001.
USER 10001:10001
EXPOSE 8080
# The CLI is the entry point: `serve` (default), `migrate`, `settings …`, `keys …`, `events send …`.
ENTRYPOINT ["/nodejs/bin/node", "--heap-growing-percent=50", "/app/dist/cli.js"]
CMD ["serve"]
