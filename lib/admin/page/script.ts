/**
 * The status page's script (plain browser JavaScript, no build step). It reads `/events` with
 * fetch rather than EventSource so it can send the bearer token, which it asks for once and keeps
 * in a variable only (never localStorage: a token must not outlive the tab). Rows are keyed by
 * service and backend and updated in place, so a button is never replaced under the pointer.
 */
export const PAGE_SCRIPT = String.raw`'use strict'
;(function () {
  var RATE_SAMPLES = 300
  var token = null
  var writes = false
  var rates = {}
  var shape = ''
  var rows = new Map()
  var sections = new Map()
  var backoffMs = 1000

  function $(id) { return document.getElementById(id) }

  /** Elements from data: strings become text nodes, never markup. */
  function el(tag, attrs) {
    var node = document.createElement(tag)
    if (attrs) for (var k in attrs) {
      if (k === 'text') node.textContent = attrs[k]
      else if (k === 'className') node.className = attrs[k]
      else node.setAttribute(k, attrs[k])
    }
    for (var i = 2; i < arguments.length; i++) {
      var c = arguments[i]
      if (c === null || c === undefined) continue
      node.appendChild(typeof c === 'string' ? document.createTextNode(c) : c)
    }
    return node
  }

  function svgEl(tag, attrs) {
    var node = document.createElementNS('http://www.w3.org/2000/svg', tag)
    for (var k in attrs) node.setAttribute(k, attrs[k])
    return node
  }

  function bytes(n) {
    var units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
    var i = 0
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++ }
    return (i === 0 ? String(n) : n.toFixed(n < 10 ? 2 : n < 100 ? 1 : 0)) + ' ' + units[i]
  }

  function ago(ms) {
    var s = Math.max(0, Math.floor(ms / 1000))
    if (s < 60) return s + 's'
    var m = Math.floor(s / 60)
    if (m < 60) return m + 'm' + String(s % 60).padStart(2, '0') + 's'
    var h = Math.floor(m / 60)
    if (h < 48) return h + 'h' + String(m % 60).padStart(2, '0') + 'm'
    return Math.floor(h / 24) + 'd' + (h % 24) + 'h'
  }

  /** 'starting': checked but no check has finished yet (the pool reports it as down). */
  function stateOf(b) {
    if (b.state === 'down' && b.checks.length === 0 && b.lastReason === 'start') return 'starting'
    return b.state
  }

  function toast(text, error) {
    var t = $('toast')
    t.textContent = text
    t.className = error ? 'error' : ''
  }

  function setConn(text, cls) {
    var c = $('conn')
    c.textContent = text
    c.className = 'conn ' + (cls || '')
  }

  function key(service, backend) { return service + '\u0000' + backend }

  function shapeOf(doc) {
    return JSON.stringify([writes, doc.services.map(function (s) { return [s.name, s.backends.map(function (b) { return b.address }), s.udpSessions !== null] })])
  }

  function build(doc) {
    var main = $('services')
    rows.clear()
    sections.clear()
    var children = []
    if (doc.services.length === 0) children.push(el('p', { className: 'empty', text: 'No services.' }))
    doc.services.forEach(function (s) {
      var h2 = el('h2', null, el('span', { className: 'name', text: s.name }), el('span', { className: 'meta' }))
      var headers = ['backend', 'state', 'weight', 'active', 'total', 'conn/s (5 min)', 'bytes in', 'bytes out', 'last 10 checks', 'since', 'why']
      if (writes) headers.push('')
      var num = { weight: 1, active: 1, total: 1, 'bytes in': 1, 'bytes out': 1, since: 1 }
      var head = el('tr', null)
      headers.forEach(function (h) { head.appendChild(el('th', { className: num[h] ? 'num' : '', text: h })) })
      var body = el('tbody', null)
      s.backends.forEach(function (b) {
        var r = {
          tr: el('tr', null),
          addr: el('td', { className: 'addr' }),
          state: el('span', { className: 'state' }),
          weight: el('td', { className: 'num' }),
          active: el('td', { className: 'num' }),
          total: el('td', { className: 'num' }),
          line: svgEl('polyline', { points: '' }),
          rate: el('span', { className: 'num' }),
          bin: el('td', { className: 'num' }),
          bout: el('td', { className: 'num' }),
          strip: el('span', { className: 'strip' }),
          since: el('td', { className: 'num' }),
          why: el('td', { className: 'why' }),
          buttons: {},
        }
        r.tr.dataset.service = s.name
        r.tr.dataset.backend = b.address
        var svg = svgEl('svg', { viewBox: '0 0 ' + RATE_SAMPLES + ' 20', preserveAspectRatio: 'none' })
        svg.appendChild(r.line)
        r.tr.append(r.addr, el('td', null, r.state), r.weight, r.active, r.total, el('td', null, el('span', { className: 'spark' }, svg, r.rate)),
          r.bin, r.bout, el('td', null, r.strip), r.since, r.why)
        if (writes) {
          var actions = el('span', { className: 'actions' })
          ;['drain', 'maint', 'enable'].forEach(function (a) {
            var button = el('button', { type: 'button', text: a })
            button.dataset.action = a
            button.dataset.service = s.name
            button.dataset.backend = b.address
            r.buttons[a] = button
            actions.appendChild(button)
          })
          r.tr.appendChild(el('td', null, actions))
        }
        rows.set(key(s.name, b.address), r)
        body.appendChild(r.tr)
      })
      sections.set(s.name, h2)
      children.push(el('section', null, h2, el('table', null, el('thead', null, head), body)))
    })
    main.replaceChildren.apply(main, children)
  }

  function meta(label, value) { return el('span', null, label + ' ', el('b', { text: String(value) })) }

  function render(state) {
    var doc = state.status
    writes = state.writes
    var next = shapeOf(doc)
    if (next !== shape) { shape = next; build(doc) }
    var now = state.at
    var up = 0, all = 0
    doc.services.forEach(function (s) {
      var h2 = sections.get(s.name)
      var m = h2.querySelector('.meta')
      var parts = [el('span', { text: s.protocols.join('+') + ' ' + s.listen.join(', ') }), meta('balance', s.balance), meta('plane', s.plane || 'node'),
        meta('usable', s.usableBackends + '/' + s.backends.length), meta('active', s.activeConnections)]
      if (s.udpSessions !== null) parts.push(meta('udp sessions', s.udpSessions))
      if (s.usingBackups) parts.push(el('span', { className: 'badge warn', text: 'on backups' }))
      if (s.usableBackends === 0) parts.push(el('span', { className: 'badge warn', text: 'no usable backend' }))
      m.replaceChildren.apply(m, parts)
      s.backends.forEach(function (b) {
        var r = rows.get(key(s.name, b.address))
        if (!r) return
        all++
        var st = stateOf(b)
        if (st === 'up') up++
        r.tr.className = 'row-' + st
        r.addr.replaceChildren(b.address)
        if (b.backup) r.addr.appendChild(el('small', { text: 'backup' }))
        r.state.textContent = st
        r.state.className = 'state st-' + st
        var w = String(b.weight)
        if (b.effectiveWeight !== undefined && b.effectiveWeight !== b.weight) w = b.effectiveWeight + ' → ' + b.weight
        if (b.configWeight !== undefined && b.configWeight !== b.weight) w += ' (config ' + b.configWeight + ')'
        r.weight.textContent = w
        // a per-backend limit shows as active/max, connections waiting for a slot as +N queued
        r.active.textContent = String(b.activeConnections) + (b.maxConns ? '/' + b.maxConns : '') + (b.queued ? ' +' + b.queued + ' queued' : '')
        r.total.textContent = String(b.connectionsTotal)
        r.bin.textContent = bytes(b.bytesIn)
        r.bin.title = b.bytesIn + ' bytes'
        r.bout.textContent = bytes(b.bytesOut)
        r.bout.title = b.bytesOut + ' bytes'
        var ring = (rates[s.name] || {})[b.address] || []
        var max = 1
        ring.forEach(function (v) { if (v > max) max = v })
        var offset = RATE_SAMPLES - ring.length
        r.line.setAttribute('points', ring.map(function (v, i) { return (offset + i) + ',' + (19 - (v / max) * 18).toFixed(1) }).join(' '))
        r.rate.textContent = String(ring.length ? ring[ring.length - 1] : 0)
        r.rate.title = 'peak ' + max + '/s over ' + ring.length + ' s'
        var marks = []
        if (b.checks.length === 0 && st === 'up') marks.push(el('span', { className: 'nocheck', text: 'not checked' }))
        else for (var i = 0; i < 10 - b.checks.length; i++) marks.push(el('i', { title: 'no check yet' }))
        b.checks.forEach(function (c) {
          var cls = c.ok ? 'ok' : c.passive ? 'passive' : 'fail'
          var title = c.at.slice(11, 19) + ' ' + (c.ok ? 'passed' : c.passive ? 'data-path failure' : 'failed') + ' in ' + c.durationMs + ' ms' + (c.error ? ': ' + c.error : '')
          marks.push(el('i', { className: cls, title: title }))
        })
        r.strip.replaceChildren.apply(r.strip, marks)
        r.since.textContent = ago(now - Date.parse(b.lastChange))
        r.since.title = b.lastChange
        var why = b.lastReason + (b.lastError && st !== 'up' && b.lastReason.indexOf(b.lastError) < 0 ? ' [' + b.lastError + ']' : '')
        r.why.textContent = why
        r.why.title = why
        if (writes) {
          r.buttons.drain.hidden = b.state === 'drain'
          r.buttons.maint.hidden = b.state === 'maint'
          r.buttons.enable.hidden = b.state !== 'drain' && b.state !== 'maint'
        }
      })
    })
    $('summary').textContent = doc.services.length + ' services · ' + up + '/' + all + ' backends up · pid ' + doc.pid + ' · up ' + ago(doc.uptimeSeconds * 1000)
    $('draining').textContent = doc.draining.length ? 'draining after reload: ' + doc.draining.map(function (d) { return d.name + ' (' + d.activeConnections + ')' }).join(', ') : ''
  }

  function onEvent(name, data) {
    if (name === 'history') { rates = data.rates; return }
    if (name !== 'state') return
    for (var s in data.rates) {
      var svc = rates[s] || (rates[s] = {})
      for (var b in data.rates[s]) {
        var ring = svc[b] || (svc[b] = [])
        ring.push(data.rates[s][b])
        if (ring.length > RATE_SAMPLES) ring.shift()
      }
    }
    render(data)
    setConn('live · ' + new Date(data.at).toLocaleTimeString(), 'live')
  }

  function onBlock(block) {
    var name = 'message', data = []
    block.split('\n').forEach(function (line) {
      if (line.slice(0, 6) === 'event:') name = line.slice(6).trim()
      else if (line.slice(0, 5) === 'data:') data.push(line.slice(5).replace(/^ /, ''))
    })
    if (data.length) onEvent(name, JSON.parse(data.join('\n')))
  }

  function headers() { return token ? { authorization: 'Bearer ' + token } : {} }

  function retry() {
    setTimeout(stream, backoffMs)
    backoffMs = Math.min(backoffMs * 2, 15000)
  }

  function askToken(why) {
    setConn('locked', 'lost')
    $('login-why').textContent = why
    $('login').hidden = false
    $('token').focus()
  }

  async function stream() {
    var res
    try {
      res = await fetch('events', { headers: headers(), cache: 'no-store' })
    } catch (err) {
      setConn('offline, retrying', 'lost')
      return retry()
    }
    if (res.status === 401) return askToken(token ? 'wrong token, again:' : 'this l4lb needs its admin token:')
    if (!res.ok || !res.body) {
      setConn('error ' + res.status + ', retrying', 'lost')
      return retry()
    }
    backoffMs = 1000
    var reader = res.body.pipeThrough(new TextDecoderStream()).getReader()
    var buffered = ''
    try {
      for (;;) {
        var chunk = await reader.read()
        if (chunk.done) break
        buffered += chunk.value.replace(/\r\n?/g, '\n')
        var end
        while ((end = buffered.indexOf('\n\n')) >= 0) {
          onBlock(buffered.slice(0, end))
          buffered = buffered.slice(end + 2)
        }
      }
    } catch (err) { /* the stream broke: reconnect below */ }
    setConn('disconnected, retrying', 'lost')
    retry()
  }

  async function act(button) {
    var path = 'backends/' + encodeURIComponent(button.dataset.service) + '/' + encodeURIComponent(button.dataset.backend) + '/' + button.dataset.action
    button.disabled = true
    try {
      var res = await fetch(path, { method: 'POST', headers: headers() })
      var body = await res.json().catch(function () { return {} })
      if (res.ok) toast(body.service + ' ' + body.backend + ': ' + body.from + ' → ' + body.to, false)
      else toast(button.dataset.action + ' failed: ' + (body.error || res.status), true)
    } catch (err) {
      toast(button.dataset.action + ' failed: ' + err.message, true)
    } finally {
      button.disabled = false
    }
  }

  document.addEventListener('DOMContentLoaded', function () {
    $('login').addEventListener('submit', function (e) {
      e.preventDefault()
      token = $('token').value.trim()
      $('token').value = ''
      $('login').hidden = true
      setConn('connecting…')
      stream()
    })
    $('services').addEventListener('click', function (e) {
      var button = e.target.closest('button[data-action]')
      if (button) act(button)
    })
    stream()
  })
})()
`
