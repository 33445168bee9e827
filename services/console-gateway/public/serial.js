// The serial console viewer (protocol `serial`, IPMI serial-over-LAN): an xterm.js terminal on the console
// socket, which carries the host's serial line as raw bytes both ways (binary frames from the gateway; the
// page sends each keystroke's bytes as a binary frame). Loaded by app.js only for serial sessions: at build
// time (scripts/bundle.mjs) this file, xterm.js and its fit add-on become one chunk of their own.
import { Terminal } from './xterm/xterm.mjs'
import { FitAddon } from './xterm/addon-fit.mjs'

/**
 * xterm.js styles itself at run time with `<style>` elements (theme, cell size, scroll bar) and, for
 * 24-bit colours, `style` attributes — the inline styles the page's CSP (`style-src 'self'`) refuses. So
 * the policy can stay strict, the same rules go through the CSSOM instead, which CSP does not govern:
 * asked for a `<style>` element, this page's document gives an inert `<template>` whose text goes into a
 * constructed stylesheet adopted by the document (even an empty `<style>` element is an inline style to
 * CSP), and `setAttribute('style', …)` sets `style.cssText`.
 */
export function keepStylesStrict (doc = document) {
  if (doc.portholeStrictStyles === true) return
  doc.portholeStrictStyles = true
  const create = doc.createElement.bind(doc)
  doc.createElement = function (tag, options) {
    if (String(tag).toLowerCase() !== 'style') return create(tag, options)
    const el = create('template')
    const sheet = new window.CSSStyleSheet()
    let text = ''
    let adopted = false
    Object.defineProperty(el, 'textContent', {
      configurable: true,
      get: () => text,
      set: (value) => {
        text = value == null ? '' : String(value)
        sheet.replaceSync(text)
        if (!adopted) { adopted = true; doc.adoptedStyleSheets = [...doc.adoptedStyleSheets, sheet] }
      }
    })
    const remove = el.remove.bind(el)
    el.remove = () => {
      if (adopted) { adopted = false; doc.adoptedStyleSheets = doc.adoptedStyleSheets.filter(s => s !== sheet) }
      remove()
    }
    return el
  }
  const setAttribute = window.Element.prototype.setAttribute
  window.Element.prototype.setAttribute = function (name, value) {
    if (String(name).toLowerCase() === 'style' && this instanceof window.HTMLElement) { this.style.cssText = String(value); return }
    setAttribute.call(this, name, value)
  }
}

/**
 * Shows the serial console of `first` (an open or opening WebSocket) in `screen`. `ui` is the page's:
 * `connected()` once the line is up, `lineSpoke()` at the line's first bytes, `disconnect(fn)` to wire the
 * Disconnect button, and optionally `filter(data)`, which may change what a keystroke sends (the key bar's
 * latched Ctrl and Alt). Returns the terminal, and `attach(ws)`, which puts a new socket (a reconnect's)
 * behind the same terminal.
 */
export function startSerial (screen, first, ui) {
  keepStylesStrict()
  const box = document.createElement('div')
  box.id = 'terminal'
  screen.appendChild(box)
  const term = new Terminal({
    cursorBlink: true,
    convertEol: false,
    scrollback: 5000,
    fontFamily: 'ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace',
    fontSize: 15,
    theme: { background: '#000000' }
  })
  const fit = new FitAddon()
  term.loadAddon(fit)
  term.open(box)
  const refit = () => { try { fit.fit() } catch { /* not laid out yet */ } }
  refit()
  new window.ResizeObserver(refit).observe(screen)

  let ws
  const encoder = new TextEncoder()
  const send = (bytes) => { if (ws.readyState === WebSocket.OPEN) ws.send(bytes) }
  const filter = ui.filter ?? ((d) => d)
  term.onData((d) => send(encoder.encode(filter(d))))
  // Some terminal reports (e.g. mouse) are raw bytes held in a string, one byte per character.
  term.onBinary((d) => send(Uint8Array.from(d, (c) => c.charCodeAt(0) & 0xff)))

  const attach = (next) => {
    ws = next
    next.binaryType = 'arraybuffer'
    let spoke = false
    next.onmessage = (e) => {
      if (!spoke) { spoke = true; ui.lineSpoke?.() }
      if (typeof e.data === 'string') term.write(e.data)
      else term.write(new Uint8Array(e.data))
    }
    // A serial line is silent until something is typed, so the console is up once the socket is: the gateway
    // closes it with a reason if the agent's bridge does not answer.
    let up = false
    const connected = () => {
      if (up || next.readyState !== WebSocket.OPEN) return
      up = true
      term.options.disableStdin = false
      term.options.cursorBlink = true
      ui.connected()
    }
    if (next.readyState === WebSocket.OPEN) connected()
    else next.addEventListener('open', connected, { once: true })
    next.addEventListener('close', () => { if (ws === next) { term.options.disableStdin = true; term.options.cursorBlink = false } })
  }
  attach(first)
  ui.disconnect(() => ws.close(1000, 'user'))
  term.focus()
  return { term, attach }
}
