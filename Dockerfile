# Loopers image: `docker build -t loopers .`, then `docker run --init -p 8080:8080 -e REDIS_URL=… loopers`.
# The CLI is /app/loopers (also `loopers` on PATH): `docker exec <container> /app/loopers keys create …`.

# ---- build: full dependency tree, TypeScript -> dist/ ------------------------------------------
FROM node:24-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
# Scripts skipped here: `prepare` would build before the sources are copied. Dependencies first, so
# the layer is reused until the lockfile changes.
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json ./
COPY src ./src
RUN npm run build

# ---- runtime: production dependencies, the build, Lua scripts, prices ---------------------------
FROM node:24-bookworm-slim AS runtime
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
# --ignore-scripts: `prepare` runs the build, and there is no compiler here.
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist ./dist
COPY lua ./lua
COPY pricing ./pricing
COPY docker/loopers ./loopers
# The files stay root-owned, so the `node` user can run them but not change them.
RUN chmod 0755 /app/loopers && ln -s /app/loopers /usr/local/bin/loopers
USER node
# 8080: the proxy. 9090: /metrics and /health, for the host's loopback only (see docker-compose.yml).
EXPOSE 8080 9090
# The slim image has no curl: Node's own fetch asks the proxy's /health (200 once Redis answers).
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.PORT||8080)+'/health',{signal:AbortSignal.timeout(4000)}).then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
CMD ["/app/loopers", "serve"]
