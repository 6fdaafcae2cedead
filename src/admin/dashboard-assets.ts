import { readFileSync } from 'node:fs'
import type { FastifyInstance, FastifyReply } from 'fastify'

/**
 * The spend dashboard's static files (src/dashboard/, copied to dist/dashboard/ by the build): one page, one
 * script, one style sheet, read once at start-up. No build chain, no CDN: the page works offline.
 */

const ASSETS = {
  '/': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/dashboard.js': { file: 'dashboard.js', type: 'text/javascript; charset=utf-8' },
  '/dashboard.css': { file: 'dashboard.css', type: 'text/css; charset=utf-8' },
} as const

interface DashboardAssets {
  /** Registers GET for the page and its two files. */
  register(app: FastifyInstance): void
  /** Sends the page on `reply` (whose status the caller has set). */
  sendPage(reply: FastifyReply): FastifyReply
}

/** Reads the files next to this module's build output; throws at start-up when they are missing. */
export function loadDashboardAssets(): DashboardAssets {
  const bodies = new Map<string, Buffer>()
  for (const [path, asset] of Object.entries(ASSETS)) {
    bodies.set(path, readFileSync(new URL(`../dashboard/${asset.file}`, import.meta.url)))
  }
  const send = (reply: FastifyReply, path: keyof typeof ASSETS): FastifyReply =>
    reply.header('content-type', ASSETS[path].type).send(bodies.get(path))
  return {
    register(app) {
      for (const path of Object.keys(ASSETS) as Array<keyof typeof ASSETS>) app.get(path, async (_request, reply) => send(reply, path))
    },
    sendPage: (reply) => send(reply, '/'),
  }
}
