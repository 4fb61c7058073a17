# sockgate gateway image.
#
#   docker build -t sockgate .
#   docker run -p 8080:8080 -v "$PWD/sockgate.yaml:/etc/sockgate/config.yaml:ro" sockgate
#
# A config file is required: the container runs `sockgate serve --config /etc/sockgate/config.yaml` and exits
# with a one-line error when the file is missing or invalid (docs/CONFIG.md lists every key). The listen address
# is 0.0.0.0:8080 whatever the file says, so the port can be published.
#
# Listening beyond loopback: give the config credentials (tokens or JWT; docs/SECURITY.md). A config without
# any auth on a non-loopback address will need an explicit `--allow-anonymous` (to be enforced by the CLI in a
# later release); add it to the command only for a gateway that no one untrusted can reach, e.g.
#   docker run ... sockgate serve --config /etc/sockgate/config.yaml --listen 0.0.0.0:8080 --allow-anonymous
#
# The build stage runs the same commands as CI (.ci/run): `npm ci` (whose prepare script builds) and
# `npm run build`.

FROM node:20-bookworm-slim AS build
WORKDIR /src
ENV CI=true npm_config_fund=false npm_config_audit=false npm_config_update_notifier=false
COPY package.json package-lock.json ./
# Sources first: `npm ci` runs `prepare`, which builds, so the whole tree must be there.
COPY tsconfig.base.json tsconfig.build.json tsconfig.json ./
COPY shared/ shared/
COPY server/ server/
COPY client/ client/
COPY scripts/ scripts/
RUN npm ci
RUN npm run build
RUN npm prune --omit=dev

FROM node:20-bookworm-slim AS runtime
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build --chown=root:root /src/package.json ./package.json
COPY --from=build --chown=root:root /src/node_modules ./node_modules
COPY --from=build --chown=root:root /src/dist ./dist
# The code is root-owned and read-only to the gateway, which runs as the image's unprivileged `node` user.
USER node
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:8080/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
ENTRYPOINT ["node", "/app/dist/server/cli.js"]
CMD ["serve", "--config", "/etc/sockgate/config.yaml", "--listen", "0.0.0.0:8080"]
