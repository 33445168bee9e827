/** The VNC display of a domain, read from its live XML, and the address the console gateway reaches it at. */
import { ConflictError } from '@porthole/contracts/errors'

export interface VncDisplay {
  port: number
  /** The `listen` address, or undefined when the XML names none. */
  listen: string | undefined
  password: string | undefined
}

const WILDCARD_OR_LOOPBACK = new Set(['', '127.0.0.1', '0.0.0.0', '::', '::1', '[::]', '[::1]', 'localhost'])

/** The attributes of a start tag (`<disk type='file' device='disk'>`), unescaped. */
export function attrs (tag: string): Map<string, string> {
  const out = new Map<string, string>()
  for (const m of tag.matchAll(/([A-Za-z_:][\w:.-]*)\s*=\s*(?:'([^']*)'|"([^"]*)")/g)) {
    out.set(m[1] as string, unescapeXml(m[2] ?? m[3] ?? ''))
  }
  return out
}

function unescapeXml (s: string): string {
  return s.replace(/&(lt|gt|quot|apos|amp|#\d+|#x[0-9a-f]+);/gi, (_m, e: string) => {
    switch (e.toLowerCase()) {
      case 'lt': return '<'
      case 'gt': return '>'
      case 'quot': return '"'
      case 'apos': return "'"
      case 'amp': return '&'
      default: return String.fromCodePoint(e[1] === 'x' || e[1] === 'X' ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10))
    }
  })
}

/**
 * The first `<graphics type='vnc'>` of a live domain XML (fetched with the SECURE flag, so `passwd` is
 * there). ConflictError when there is none, or it has no TCP port (autoport not yet assigned, port -1, or a
 * UNIX socket display).
 */
export function parseVncDisplay (xml: string): VncDisplay {
  for (const m of xml.matchAll(/<graphics\b([^>]*?)(\/>|>([\s\S]*?)<\/graphics>)/g)) {
    const a = attrs(m[1] ?? '')
    if (a.get('type') !== 'vnc') continue
    const port = Number(a.get('port') ?? '-1')
    if (!Number.isInteger(port) || port <= 0 || port > 65535) throw new ConflictError('the VM\'s VNC display has no TCP port (it listens on a socket or has not been assigned one)')
    let listen = a.get('listen')
    if (listen === undefined && m[3] !== undefined) {
      const l = /<listen\b([^>]*)\/?>/.exec(m[3])
      if (l !== null) listen = attrs(l[1] ?? '').get('address')
    }
    return { port, listen, password: a.get('passwd') }
  }
  throw new ConflictError('the VM has no VNC display')
}

/** True when a domain's XML is that of a running (or paused) domain: libvirt writes its `id` then only. */
export function isActiveDomainXml (xml: string): boolean {
  const open = /<domain\b([^>]*)>/.exec(xml)
  return open !== null && /^\d+$/.test(attrs(open[1] ?? '').get('id') ?? '')
}

/**
 * Where the gateway connects: the listen address itself when it is a specific one; for loopback or
 * wildcard listens (or none) the host configured for the URI, else the URI's own host, else 127.0.0.1.
 */
export function consoleHost (listen: string | undefined, uri: string, consoleHosts: Readonly<Record<string, string>>): string {
  if (listen !== undefined && !WILDCARD_OR_LOOPBACK.has(listen.trim())) return listen.trim()
  const mapped = consoleHosts[uri]
  if (mapped !== undefined) return mapped
  return uriHost(uri) ?? '127.0.0.1'
}

/** The host of a libvirt URI (`qemu+ssh://root@h1:22/system` → `h1`), undefined for a local one. */
export function uriHost (uri: string): string | undefined {
  const m = /^[a-z0-9+]+:\/\/(?:[^@/]*@)?(\[[^\]]+\]|[^/:?]*)/i.exec(uri)
  const h = m?.[1]
  if (h === undefined || h === '') return undefined
  return h.startsWith('[') ? h.slice(1, -1) : h
}
