# syntax=docker/dockerfile:1
# One build for all four services; the command picks one: `api`, `receiver`, `agents` or `console-gateway`
# (see deploy/entrypoint.sh), e.g. `docker run -e PORTHOLE_SECRET_KEY=… -e PORTHOLE_ADMIN_TOKEN=… porthole api`: pass each service only its own secrets.
# The default target (the last stage) runs as the unprivileged `node`; the agents have a target of their own,
# `--target agents`, whose user is in no group but libvirt's (stage `agents` below).
# docker-compose.yml at the repository's root runs the whole system with it; deploy/README.md explains it.

# --- manifests: every workspace's package.json, and nothing else --------------------------------------
# Copied on their own so that `npm ci` below is redone only when a manifest or the lock file changes, and
# so that a new workspace needs no edit here.
FROM node:20-bookworm-slim AS manifests
WORKDIR /src
COPY . .
RUN mkdir /out && find . -maxdepth 3 -name package.json -not -path './node_modules/*' -exec cp --parents {} /out/ \; \
 && cp package-lock.json /out/

# --- build: compile TypeScript and the native libvirt binding ------------------------------------------
FROM node:20-bookworm-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential python3 pkg-config libvirt-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
# node-gyp builds against the image's own Node headers instead of downloading them.
ENV npm_config_nodedir=/usr/local npm_config_audit=false npm_config_fund=false npm_config_update_notifier=false
COPY --from=manifests /out/ ./
# Install scripts run only where the root package.json's allowScripts says so: the libvirt binding.
RUN npm ci --ignore-scripts \
 && npm rebuild @unraid/libvirt \
 && test -f node_modules/@unraid/libvirt/build/Release/libvirt.node
COPY . .
# Before the prune, the manifest forgets the dev-only workspaces (the test kit, bench, the e2e tests), so that
# their links and the packages only they need (playwright-core, …) go too.
RUN npm run build \
 && node -e "const f='package.json', j=JSON.parse(require('fs').readFileSync(f)); j.workspaces=j.workspaces.filter(w => w.startsWith('services/') || w === 'packages/contracts' || w === 'packages/shared'); require('fs').writeFileSync(f, JSON.stringify(j))" \
 && npm prune --omit=dev --ignore-scripts \
 && rm -rf bench test packages/testkit node_modules/@porthole/testkit packages/*/test services/*/test packages/*/dist/test services/*/dist/test

# --- runtime: what every service's image holds ---------------------------------------------------------
FROM node:20-bookworm-slim AS runtime
# libvirt0: the binding's shared library (same Debian release as libvirt-dev above); openssh-client for
# qemu+ssh:// URIs; ipmitool for the ipmi agent.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libvirt0 ipmitool openssh-client ca-certificates \
 && rm -rf /var/lib/apt/lists/*
# UV_THREADPOOL_SIZE: the agents run libvirt calls on libuv's thread pool (4 threads by default), where a dead
# host holds a thread until TCP gives up. Node reads it at process start only, so it is set here, not in code.
ENV NODE_ENV=production UV_THREADPOOL_SIZE=64
WORKDIR /app
COPY --from=build /app /app
COPY deploy/entrypoint.sh /usr/local/bin/porthole
RUN chmod 0755 /usr/local/bin/porthole
# Files stay root-owned (read-only to the service); the services run as the image's unprivileged `node`.
USER node
EXPOSE 8080 8081
ENTRYPOINT ["porthole"]
CMD ["api"]

# --- agents: not root, and in no group but libvirt's ------------------------------------------------------
# The agents open every server's sealed credentials and start libvirt's transports (ssh for qemu+ssh://), so
# they run as `porthole-agent` (uid AGENTS_UID) whose only group is `libvirt` with the host's gid
# (LIBVIRT_GID: `getent group libvirt | cut -d: -f3` on the host), so that the host's libvirt socket, mounted
# at /var/run/libvirt, admits them. deploy/README.md says what libvirtd must allow.
# `docker build --target agents --build-arg LIBVIRT_GID=… -t porthole-agents .`
FROM runtime AS agents
ARG AGENTS_UID=10001
ARG LIBVIRT_GID=990
USER root
RUN { if getent group libvirt >/dev/null; then groupmod --non-unique --gid "$LIBVIRT_GID" libvirt; \
      else groupadd --non-unique --gid "$LIBVIRT_GID" libvirt; fi; } \
 && useradd --uid "$AGENTS_UID" --gid libvirt --no-user-group --create-home --home-dir /home/porthole-agent \
      --shell /usr/sbin/nologin porthole-agent \
 && install -d -m 0700 -o porthole-agent -g libvirt /home/porthole-agent/.ssh \
 && test "$(id -G porthole-agent)" = "$LIBVIRT_GID"
USER porthole-agent
CMD ["agents"]

# --- default: api, receiver and console-gateway, as `node` (the runtime stage as it is) -----------------
FROM runtime
