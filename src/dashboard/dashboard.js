// The spend dashboard: reads the admin listener's JSON API and redraws itself every few seconds.
// Plain browser JavaScript, no build step, no third-party code. Every value from the API goes into the page through
// textContent (never innerHTML), so a key name can never become markup.
'use strict'

const REFRESH_MS = 3000
const TOKEN_KEY = 'loopers-admin-token'
const WINDOWS = ['minute', 'hourly', 'daily', 'weekly', 'monthly']
const SVG = 'http://www.w3.org/2000/svg'

const $ = (id) => document.getElementById(id)
let timer = null

/** GETs `path` with the stored token; resolves with the status and the parsed body (null when not JSON). */
async function getJson(path) {
  const token = sessionStorage.getItem(TOKEN_KEY)
  const headers = { accept: 'application/json' }
  if (token) headers.authorization = `Bearer ${token}`
  const response = await fetch(path, { headers, cache: 'no-store', credentials: 'omit' })
  let body = null
  try {
    body = await response.json()
  } catch {
    body = null
  }
  return { status: response.status, body }
}

/** Creates an element with a class and text (textContent: data never becomes markup). */
function el(tag, className, text) {
  const node = document.createElement(tag)
  if (className) node.className = className
  if (text !== undefined && text !== null) node.textContent = String(text)
  return node
}

/** USD as the CLI prints it: at least two decimals, up to six, trailing zeros trimmed. */
function usd(value) {
  if (value === null || value === undefined) return '—'
  const micros = Math.round(value * 1e6)
  const sign = micros < 0 ? '-' : ''
  const abs = Math.abs(micros)
  const fraction = String(abs % 1e6).padStart(6, '0').replace(/0+$/, '').padEnd(2, '0')
  return `${sign}$${Math.floor(abs / 1e6)}.${fraction}`
}

/** "2026-03-01 14:05 UTC (in 2h 3m)". */
function resetText(iso) {
  const at = new Date(iso)
  if (Number.isNaN(at.getTime())) return iso
  const minutes = Math.max(0, Math.round((at.getTime() - Date.now()) / 60000))
  const days = Math.floor(minutes / 1440)
  const hours = Math.floor((minutes % 1440) / 60)
  const left = days > 0 ? `${days}d ${hours}h` : hours > 0 ? `${hours}h ${minutes % 60}m` : `${minutes}m`
  return `${at.toISOString().slice(0, 16).replace('T', ' ')} UTC (in ${left})`
}

/** A bar: spent (green, amber past 80 %, red at the limit) then held, as shares of the limit. */
function bar(window) {
  const cell = el('td', 'bar')
  if (window.limit_usd === null || window.limit_usd <= 0) {
    cell.append(el('span', 'unlimited', 'no limit'))
    return cell
  }
  const spentShare = Math.min(1, window.spent_usd / window.limit_usd)
  const heldShare = Math.min(1 - spentShare, window.held_usd / window.limit_usd)
  const track = el('div', 'bar-track')
  track.title = `${Math.floor(((window.spent_usd + window.held_usd) * 100) / window.limit_usd)}% used or held`
  const spent = el('div', `bar-spent${spentShare >= 1 ? ' over' : spentShare >= 0.8 ? ' warn' : ''}`)
  spent.style.width = `${spentShare * 100}%`
  const held = el('div', 'bar-held')
  held.style.left = `${spentShare * 100}%`
  held.style.width = `${heldShare * 100}%`
  track.append(spent, held)
  cell.append(track)
  return cell
}

/** One key: name, hash prefix, providers, state, then a row per window. */
function keyCard(key) {
  const card = el('article', 'key')
  card.dataset.hash = key.hash
  const title = el('h3')
  title.append(el('span', 'name', key.name), el('code', 'muted', key.hash.slice(0, 12)))
  title.append(el('span', `badge ${key.active ? 'active' : 'revoked'}`, key.active ? 'active' : 'revoked'))
  card.append(title, el('p', 'meta muted', `providers: ${key.providers.join(', ')}`))
  const table = el('table')
  const head = el('tr')
  for (const name of ['window', 'limit', 'spent', 'held', 'remaining', 'resets', 'used']) head.append(el('th', null, name))
  table.append(head)
  for (const name of WINDOWS) {
    const w = key.windows[name]
    const row = el('tr')
    row.dataset.window = name
    row.append(el('td', null, name), el('td', 'num', usd(w.limit_usd)), el('td', 'num spent', usd(w.spent_usd)))
    row.append(el('td', 'num held', usd(w.held_usd)), el('td', 'num', usd(w.remaining_usd)), el('td', 'muted', resetText(w.resets_at)), bar(w))
    table.append(row)
  }
  card.append(table)
  return card
}

/** A table with a header row; each cell is text, a node to put in a cell, or a whole <td>. */
function table(headers, rows, numeric = []) {
  const t = el('table')
  const head = el('tr')
  for (const name of headers) head.append(el('th', null, name))
  t.append(head)
  for (const cells of rows) {
    const tr = el('tr')
    cells.forEach((cell, i) => {
      if (cell instanceof HTMLTableCellElement) return tr.append(cell) // a cell built whole, such as bar()
      const td = cell instanceof Node ? el('td') : el('td', numeric.includes(i) ? 'num' : null, cell)
      if (cell instanceof Node) td.append(cell)
      tr.append(td)
    })
    t.append(tr)
  }
  return t
}

/** "name 1a2b3c4d": a key as the page names it (its name when known, always the 8-digit prefix logs show). */
function keyLabel(names, prefix) {
  const span = el('span')
  const name = names.get(prefix)
  if (name) span.append(el('span', 'name', name), ' ')
  span.append(el('code', 'muted', prefix))
  return span
}

function fillSection(id, content) {
  const section = $(id)
  section.replaceChildren(section.querySelector('h2'), content)
}

/** Live sessions: key, id, spent, held, steps (of the limit), budget with a bar. */
async function refreshSessions(names) {
  const { status, body } = await getJson('/api/sessions')
  if (status !== 200 || !Array.isArray(body)) throw new Error(body?.error?.message ?? `sessions: HTTP ${status}`)
  if (body.length === 0) return fillSection('sessions', el('p', 'muted empty', 'No live sessions.'))
  const rows = body.map((s) => [
    keyLabel(names, s.hash.slice(0, 8)),
    el('code', 'session-id', s.id),
    usd(s.spent_usd),
    usd(s.held_usd),
    s.max_steps === null ? String(s.steps) : `${s.steps} / ${s.max_steps}`,
    usd(s.budget_usd),
    bar({ limit_usd: s.budget_usd, spent_usd: s.spent_usd, held_usd: s.held_usd }),
  ])
  const t = table(['key', 'session', 'spent', 'held', 'steps', 'budget', 'used'], rows, [2, 3, 4, 5])
  t.querySelectorAll('tr').forEach((tr, i) => { if (i > 0) tr.dataset.session = body[i - 1].id })
  fillSection('sessions', t)
}

const EVENT_KIND = { refusal: 'refused', cutoff: 'stream cut' }

/** Recent refusals and cut-offs, newest first. */
async function refreshEvents(names) {
  const { status, body } = await getJson('/api/events?limit=50')
  if (status !== 200 || !Array.isArray(body)) throw new Error(body?.error?.message ?? `events: HTTP ${status}`)
  if (body.length === 0) return fillSection('events', el('p', 'muted empty', 'None recorded.'))
  const rows = body.map((e) => [
    new Date(e.time).toISOString().slice(0, 19).replace('T', ' ') + ' UTC',
    el('span', `badge ${e.kind}`, EVENT_KIND[e.kind] ?? e.kind),
    keyLabel(names, e.key_hash_prefix),
    e.provider,
    e.reason,
    e.window ?? '—',
  ])
  const t = table(['time', 'what', 'key', 'provider', 'reason', 'window'], rows)
  t.querySelectorAll('tr').forEach((tr, i) => { if (i > 0) tr.dataset.kind = body[i - 1].kind })
  fillSection('events', t)
}

/** Daily spend of each key as a small inline SVG bar chart. */
async function refreshHistory(keys) {
  const charts = []
  for (const key of keys) {
    const { status, body } = await getJson(`/api/keys/${encodeURIComponent(key.hash)}/history?days=30`)
    if (status !== 200 || !Array.isArray(body?.days)) throw new Error(body?.error?.message ?? `history: HTTP ${status}`)
    charts.push(historyChart(key, body.days))
  }
  const section = $('history')
  section.replaceChildren(section.querySelector('h2'), ...(charts.length > 0 ? charts : [el('p', 'muted empty', 'No keys yet.')]))
}

function svg(tag, attributes) {
  const node = document.createElementNS(SVG, tag)
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, String(value))
  return node
}

function historyChart(key, days) {
  const figure = el('figure', 'history')
  figure.dataset.hash = key.hash
  const width = 600
  const height = 80
  const axis = 14
  const max = Math.max(...days.map((d) => d.spent_usd), 0)
  const total = days.reduce((sum, d) => sum + d.spent_usd, 0)
  const chart = svg('svg', { viewBox: `0 0 ${width} ${height + axis}`, role: 'img', 'aria-label': `daily spend of ${key.name}` })
  chart.append(svg('line', { x1: 0, y1: height, x2: width, y2: height, class: 'history-axis' }))
  const step = width / Math.max(days.length, 1)
  days.forEach((day, i) => {
    const h = max > 0 ? (day.spent_usd / max) * (height - 4) : 0
    const rect = svg('rect', { x: i * step + 1, y: height - h, width: Math.max(step - 2, 1), height: h, class: 'history-bar' })
    rect.dataset.date = day.date
    rect.dataset.spent = String(day.spent_usd)
    const tip = svg('title', {})
    tip.textContent = `${day.date}: ${usd(day.spent_usd)}`
    rect.append(tip)
    chart.append(rect)
  })
  if (days.length > 0) {
    const first = svg('text', { x: 0, y: height + axis - 2, class: 'history-label' })
    first.textContent = days[0].date
    const last = svg('text', { x: width, y: height + axis - 2, 'text-anchor': 'end', class: 'history-label' })
    last.textContent = days[days.length - 1].date
    chart.append(first, last)
  }
  const caption = el('figcaption', 'muted')
  caption.append(el('span', 'name', key.name), ` · ${usd(total)} in ${days.length} days, busiest day ${usd(max)}`)
  figure.append(chart, caption)
  return figure
}

function askForToken(refused) {
  $('content').hidden = true
  $('token-form').hidden = false
  $('token-error').hidden = !refused
  $('status').textContent = 'This dashboard needs the admin token.'
  $('token-input').focus()
}

async function refresh() {
  clearTimeout(timer)
  try {
    const { status, body } = await getJson('/api/keys')
    if (status === 401) {
      const hadToken = sessionStorage.getItem(TOKEN_KEY) !== null
      sessionStorage.removeItem(TOKEN_KEY)
      askForToken(hadToken)
      return // no polling until a token is given
    }
    if (status !== 200 || !Array.isArray(body)) throw new Error(body?.error?.message ?? `HTTP ${status}`)
    $('token-form').hidden = true
    $('content').hidden = false
    $('keys').replaceChildren(...body.map(keyCard))
    $('keys-empty').hidden = body.length > 0
    const names = new Map(body.map((k) => [k.hash.slice(0, 8), k.name]))
    await Promise.all([refreshSessions(names), refreshEvents(names), refreshHistory(body)])
    $('status').textContent = `Updated ${new Date().toLocaleTimeString()} · refreshes every ${REFRESH_MS / 1000} s`
    $('status').classList.remove('error')
  } catch (error) {
    $('status').textContent = `Cannot load: ${error.message}. Retrying…`
    $('status').classList.add('error')
  }
  timer = setTimeout(refresh, REFRESH_MS)
}

document.addEventListener('DOMContentLoaded', () => {
  $('token-form').addEventListener('submit', (event) => {
    event.preventDefault() // form-action 'none': the token never leaves through a form submission
    const token = $('token-input').value.trim()
    if (token === '') return
    sessionStorage.setItem(TOKEN_KEY, token)
    $('token-input').value = ''
    refresh()
  })
  refresh()
})
