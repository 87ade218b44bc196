# One image for every Berth role:
#   docker run berth                          all services in one process (berthd)
#   docker run berth serve node ...           a node: gateway + snapshots, diff, tasks (privileged, pid: host)
#   docker run berth serve <service> ...      one cluster service (metadata, content, events, ...)
#   docker run berth migrate --postgres URL   apply every service's schema migrations, then exit
# Base images are build arguments so a machine without a registry can pass locally built ones.
ARG NODE_IMAGE=node:20-bookworm-slim
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${NODE_IMAGE} AS build
ENV PNPM_HOME=/pnpm CI=true
RUN npm install --global --silent pnpm@12.21.0
WORKDIR /src
# Dependencies first: this layer is reused until the lockfile changes.
COPY pnpm-lock.yaml pnpm-workspace.yaml .npmrc ./
# Patched dependencies (pnpm patchedDependencies) are applied as they are fetched.
COPY patches patches
RUN pnpm fetch
# Sources of the packages berthd is built from; the other workspace packages only as package.json (see
# .dockerignore), which the install needs. Scripts under deploy/ are copied into the runtime stage only.
COPY package.json tsconfig.base.json ./
COPY libs libs
COPY services services
COPY apps apps
COPY test test
COPY bench bench
RUN pnpm install --offline --frozen-lockfile \
 && pnpm exec tsc -b apps/berthd \
 && pnpm --filter @berth/berthd deploy --prod /opt/berth \
 && cd /opt/berth \
 && find . \( -name '*.ts' ! -name '*.d.ts' -o -name '*.map' -o -name '*.tsbuildinfo' \) -type f -delete \
 && rm -rf src tsconfig.json pnpm-lock.yaml pnpm-workspace.yaml

FROM ${RUNTIME_IMAGE}
# runc and the mount tools for the node role; tar, zstd and gzip for layers. No compilers, no package caches.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      runc util-linux mount tar zstd gzip ca-certificates \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*
COPY --from=build /usr/local/bin/node /usr/local/bin/node
COPY --from=build /opt/berth /opt/berth
COPY deploy/docker/berthd deploy/docker/berth-readyz deploy/docker/berth-drain /usr/local/bin/
ENV NODE_ENV=production
EXPOSE 7000 9345
ENTRYPOINT ["berthd"]
