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

/** A table of the objects in `rows`, columns from the first one (for endpoints whose rows are flat records). */
function recordTable(rows) {
  const table = el('table')
  const columns = Object.keys(rows[0] ?? {})
  const head = el('tr')
  for (const column of columns) head.append(el('th', null, column))
  table.append(head)
  for (const row of rows) {
    const tr = el('tr')
    for (const column of columns) tr.append(el('td', null, typeof row[column] === 'object' ? JSON.stringify(row[column]) : row[column]))
    table.append(tr)
  }
  return table
}

/** A section whose endpoint may not exist on this server: 404 keeps its placeholder; rows replace it. */
async function refreshOptional(section) {
  const { status, body } = await getJson(section.dataset.endpoint)
  if (status !== 200) return
  const rows = Array.isArray(body) ? body : Array.isArray(body?.events) ? body.events : Array.isArray(body?.sessions) ? body.sessions : []
  const title = section.querySelector('h2')
  section.replaceChildren(title, rows.length === 0 ? el('p', 'muted', 'None.') : recordTable(rows))
}

/** Daily spend of each key as a small bar chart, when the server keeps history (404 keeps the placeholder). */
async function refreshHistory(keys) {
  const section = $('history')
  const charts = []
  for (const key of keys) {
    const { status, body } = await getJson(`/api/keys/${encodeURIComponent(key.hash)}/history?days=30`)
    if (status !== 200 || !Array.isArray(body?.days)) return
    charts.push(historyChart(key.name, body.days))
  }
  section.replaceChildren(section.querySelector('h2'), ...charts)
}

function historyChart(name, days) {
  const figure = el('figure')
  const width = 600
  const height = 80
  const max = Math.max(...days.map((d) => d.spent_usd), 0)
  const svg = document.createElementNS(SVG, 'svg')
  svg.setAttribute('viewBox', `0 0 ${width} ${height}`)
  svg.setAttribute('role', 'img')
  svg.setAttribute('aria-label', `daily spend of ${name}`)
  const step = width / Math.max(days.length, 1)
  days.forEach((day, i) => {
    const h = max > 0 ? (day.spent_usd / max) * (height - 4) : 0
    const rect = document.createElementNS(SVG, 'rect')
    rect.setAttribute('x', String(i * step + 1))
    rect.setAttribute('y', String(height - h))
    rect.setAttribute('width', String(Math.max(step - 2, 1)))
    rect.setAttribute('height', String(h))
    rect.setAttribute('class', 'history-bar')
    const tip = document.createElementNS(SVG, 'title')
    tip.textContent = `${day.date}: ${usd(day.spent_usd)}`
    rect.append(tip)
    svg.append(rect)
  })
  figure.append(svg, el('figcaption', 'muted', `${name}: last ${days.length} days, peak ${usd(max)}`))
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
    await Promise.all([...document.querySelectorAll('section[data-endpoint]')].map(refreshOptional))
    await refreshHistory(body)
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
