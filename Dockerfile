# syntax=docker/dockerfile:1
# Custodian API image, on Node.js 24 (LTS). Build and run both on Debian bookworm (argon2 is a
# native addon: the binary built or picked for one libc must run on the same one). The steps
# are CI's: npm ci, npm run build; then the dev dependencies are pruned.
#
# The image sets NODE_ENV=production, which requires JWT_SECRET, HASH_SECRET, AUDIT_SIGNING_KEY
# and WEBHOOK_SECRET_KEY; keep them in an env file made once (HASH_SECRET must never change):
#
#   docker build -t custodian .
#   cat > prod.env <<EOF
#   DATABASE_URL=postgres://custodian:PASSWORD@db.internal:5432/custodian
#   JWT_SECRET=$(openssl rand -base64 48)
#   HASH_SECRET=$(openssl rand -base64 48)
#   AUDIT_SIGNING_KEY=$(openssl genpkey -algorithm ed25519 | base64 -w0)
#   WEBHOOK_SECRET_KEY=$(openssl rand -base64 32)
#   EOF
#   docker run --rm --env-file prod.env custodian node dist/scripts/migrate.js
#   docker run -p 3000:3000 --env-file prod.env custodian
#   docker run --env-file prod.env custodian node dist/src/worker.js
#
# Without DATABASE_URL in prod.env the container runs on the embedded engine in /app/data, and
# the API process delivers the webhooks itself; on Postgres the worker runs beside it (N copies).

ARG NODE_IMAGE=node:24-bookworm-slim

FROM ${NODE_IMAGE} AS build
WORKDIR /app
ENV npm_config_fund=false npm_config_audit=false npm_config_update_notifier=false
# Dependencies first, so this layer is reused until package*.json change.
COPY package.json package-lock.json ./
RUN npm ci
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY migrations ./migrations
COPY scripts ./scripts
RUN npm run build && npm prune --omit=dev

FROM ${NODE_IMAGE} AS runtime
# A 192 MB cap on V8's old space keeps a streamed million-row import under 300 MB RSS (without
# it V8 lets garbage pile up to ~400 MB between major collections); bench:data measures it.
ENV NODE_ENV=production \
    NODE_OPTIONS=--max-old-space-size=192 \
    HOST=0.0.0.0 \
    PORT=3000 \
    DATA_DIR=/app/data
WORKDIR /app
COPY --from=build /app/package.json ./package.json
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
# The embedded database's folder, used when DATABASE_URL is not set; owned by the runtime user.
RUN mkdir -p /app/data && chown node:node /app/data
VOLUME ["/app/data"]
USER node
EXPOSE 3000
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "dist/scripts/healthcheck.js"]
# node itself as PID 1 (not npm start, which swallows signals): SIGTERM drains gracefully.
CMD ["node", "dist/src/server.js"]
