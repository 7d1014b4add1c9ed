# syntax=docker/dockerfile:1
# Custodian API image. Build and run both on Debian bookworm (argon2 is a native addon: the
# binary built or picked for one libc must run on the same one). The steps are CI's:
# npm ci, npm run build; then the dev dependencies are pruned.
#
#   docker build -t custodian .
#   docker run -p 3000:3000 -e JWT_SECRET=... -e DATABASE_URL=postgres://... custodian
#   docker run --rm -e DATABASE_URL=postgres://... custodian node dist/scripts/migrate.js

ARG NODE_IMAGE=node:20-bookworm-slim

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
