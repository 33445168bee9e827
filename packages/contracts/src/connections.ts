/**
 * Each agent type's connection, as `POST /v1/servers` takes it: kvm (a libvirt URI, or its parts, with the
 * URI grammar no schema pattern can say), ipmi (a BMC) and ovirt (an engine URL in its one stored form).
 */
import { Type, type Static } from '@sinclair/typebox'
import { ValidationError } from './errors.js'
import { compile } from './validate.js'

/** A host name or IP address, as a connection or console endpoint names it. */
export const Host = Type.String({ minLength: 1, maxLength: 253, pattern: '^[A-Za-z0-9.:\\[\\]_-]+$', description: 'host name or IP address' })
/** A TCP or UDP port. */
export const Port = Type.Integer({ minimum: 1, maximum: 65535 })
/** A password as a request carries it (write-only: never shown back). */
export const Secret = Type.String({ minLength: 1, maxLength: 256, writeOnly: true })

/** A libvirt domain's name or UUID. */
const KvmDomain = Type.String({ minLength: 1, maxLength: 200 })

/**
 * `agent: 'kvm'`, URI form: a libvirt URI (`qemu:///system`, `qemu+ssh://host/system`) and the domain's name
 * or UUID. The URI must also pass `libvirtUriProblem` (a grammar no schema pattern can say).
 */
export const KvmUriConnection = Type.Object({
  uri: Type.String({ minLength: 1, maxLength: 512, pattern: '^[a-z0-9+]+://' }),
  domain: KvmDomain
}, { additionalProperties: false })
export type KvmUriConnection = Static<typeof KvmUriConnection>

/** Transports of a structured kvm connection: the URI is `qemu+<transport>://[user@]host[:port]/system`. */
export const KVM_TRANSPORTS = ['ssh', 'libssh', 'libssh2', 'tls', 'tcp'] as const
export type KvmTransport = typeof KVM_TRANSPORTS[number]
/** Transports that log in with SSH, and so may name a key file. */
export const KVM_SSH_TRANSPORTS: readonly KvmTransport[] = ['ssh', 'libssh', 'libssh2']

/** One DNS label: letters, digits and inner hyphens (so never a leading `-`). */
const LABEL = '[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?'
/** A host name or IPv4 address, or an IPv6 address in brackets. */
const KVM_HOST = `(?:${LABEL}(?:\\.${LABEL})*|\\[[0-9A-Fa-f:.]+\\])`
/** A login name: no `:` (so no password) and no leading `-` (never an option to ssh). */
const KVM_USER = '[A-Za-z0-9_][A-Za-z0-9._-]{0,31}'
/** A file name inside KVM_SSH_KEY_DIR: no `/`, no leading `.` or `-`. */
const KEY_FILE = '[A-Za-z0-9_][A-Za-z0-9._-]{0,127}'

/**
 * `agent: 'kvm'`, structured form: the agents build the URI in code. `keyFile` is the *name* of a private key
 * in the directory the deployment sets (`KVM_SSH_KEY_DIR`), never a path from the caller.
 */
export const KvmHostConnection = Type.Object({
  transport: Type.Union(KVM_TRANSPORTS.map(t => Type.Literal(t))),
  host: Type.String({ minLength: 1, maxLength: 255, pattern: `^${KVM_HOST}$`, description: 'host name or IP address ([…] for IPv6)' }),
  port: Type.Optional(Port),
  user: Type.Optional(Type.String({ minLength: 1, maxLength: 32, pattern: `^${KVM_USER}$` })),
  keyFile: Type.Optional(Type.String({ minLength: 1, maxLength: 128, pattern: `^${KEY_FILE}$`, description: 'file name of an SSH private key in KVM_SSH_KEY_DIR' })),
  domain: KvmDomain
}, { additionalProperties: false })
export type KvmHostConnection = Static<typeof KvmHostConnection>

/** `agent: 'kvm'`: either form. `kvmTarget` checks one and gives the URI it stands for. */
export const KvmConnection = Type.Union([KvmUriConnection, KvmHostConnection])
export type KvmConnection = Static<typeof KvmConnection>

/** `agent: 'ipmi'`: the BMC's IPMI-over-LAN address and credentials. */
export const IpmiConnection = Type.Object({
  host: Host,
  port: Type.Optional(Port),
  username: Type.String({ minLength: 1, maxLength: 64 }),
  password: Secret,
  /** IPMI v2 cipher suite; 3 works with most BMCs (and ipmi_sim). */
  cipherSuite: Type.Optional(Type.Integer({ minimum: 0, maximum: 17 }))
}, { additionalProperties: false })
export type IpmiConnection = Static<typeof IpmiConnection>

/** libvirt URI schemes a server record may use. No `test:` (it reads any file named in the URI), no `+ext`. */
export const LIBVIRT_SCHEMES = ['qemu', 'qemu+ssh', 'qemu+libssh', 'qemu+libssh2', 'qemu+tls', 'qemu+tcp', 'qemu+unix'] as const
/**
 * URI parameters a server record may set: `keyfile` (ssh transports; only a file in KVM_SSH_KEY_DIR) and
 * `no_tty` (0 or 1). Every other one is refused: `command`, `netcat`, `proxy`, `socket`, `mode` and `name`
 * choose what runs or what is reached, `known_hosts`, `pkipath` and `tls_priority` are paths or settings the
 * deployment owns, `no_verify` and `known_hosts_verify` turn checks off, `auth` and `sshauth` pick how to log in.
 */
export const LIBVIRT_PARAMS = ['keyfile', 'no_tty'] as const

/** Deploy-time limits on kvm connections (the API and the agents read the same settings). */
export interface KvmPolicy {
  /** `KVM_SSH_KEY_DIR`: the absolute directory key files are taken from; unset, no connection names one. */
  readonly sshKeyDir?: string | undefined
  /** `KVM_ALLOWED_URIS`: when set, the only URIs a connection may stand for. */
  readonly allowedUris?: readonly string[] | undefined
}

const URI_CHARS = /^[A-Za-z0-9+:/?=&@._[\]-]*$/
const AUTHORITY = new RegExp(`^(?:([^@]*)@)?(${KVM_HOST})?(?::([^:]*))?$`)

/**
 * Why libvirt might read a URI otherwise than we do, or let it run or reach something it should not; undefined
 * when it is fine. An allow-list of one grammar, narrower than libvirt's own:
 * `qemu[+ssh|+libssh|+libssh2|+tls|+tcp|+unix]://[user@]host[:port]/(system|session)[?name=value&…]`, a
 * local URI with no authority and `/system` only. No percent-encoding and no `;` anywhere (libvirt decodes
 * parameter names and splits on `;` as well as `&`), no password, no user or host beginning with `-`, only
 * the parameters of `LIBVIRT_PARAMS`, each once.
 */
export function libvirtUriProblem (uri: string, policy: KvmPolicy = {}): string | undefined {
  if (uri.startsWith('test:') || uri.startsWith('test+')) return 'the test driver is not allowed'
  const bad = [...uri].find(ch => !URI_CHARS.test(ch))
  if (bad !== undefined) {
    if (bad === '%') return 'percent-encoding is not accepted'
    if (bad === ';') return '";" is not accepted (libvirt splits parameters on it)'
    return `character ${JSON.stringify(bad)} is not accepted`
  }
  const m = /^([a-z0-9+]+):\/\/([^/?]*)([^?]*)(?:\?(.*))?$/.exec(uri)
  if (m === null) return 'expected a libvirt URI such as qemu:///system or qemu+ssh://host/system'
  const [, scheme = '', authority = '', path = '', query] = m
  if (!(LIBVIRT_SCHEMES as readonly string[]).includes(scheme)) return `transport ${scheme} is not allowed (allowed: ${LIBVIRT_SCHEMES.join(', ')})`
  const transport = scheme.split('+')[1]
  const a = AUTHORITY.exec(authority)
  const user = a?.[1]
  if (user !== undefined && user.includes(':')) return 'a password in the URI is not accepted'
  if (user !== undefined && !new RegExp(`^${KVM_USER}$`).test(user)) return `user ${JSON.stringify(user)} is not accepted (letters, digits, ".", "_", "-"; not beginning with "-")`
  if (a === null || a[2] === undefined) {
    if (authority.replace(/^[^@]*@/, '').startsWith('-')) return 'host must not begin with "-"'
    if (authority !== '') return `host ${JSON.stringify(authority.replace(/^[^@]*@/, ''))} is not a host name or IP address`
  }
  const host = a?.[2]
  const port = a?.[3]
  if (port !== undefined && !(/^[1-9]\d{0,4}$/.test(port) && Number(port) <= 65535)) return `port ${JSON.stringify(port)} is not a port number`
  if (host === undefined && (user !== undefined || port !== undefined)) return 'a user or port needs a host'
  if (transport === 'unix' && host !== undefined) return 'qemu+unix URIs name no host'
  if (transport !== undefined && transport !== 'unix' && host === undefined) return `qemu+${transport} needs a host`
  if (path !== '/system' && path !== '/session') return `path ${JSON.stringify(path)} is not allowed (allowed: /system, /session)`
  // A local session URI makes libvirt start a daemon of its own as the agents' user.
  if (path === '/session' && host === undefined) return 'a local /session URI is not allowed (it starts a libvirt daemon as the agents\' user): use /system, or /session on a remote host'
  if (query !== undefined) {
    const seen = new Set<string>()
    for (const part of query.split('&')) {
      const eq = part.indexOf('=')
      const name = eq < 0 ? part : part.slice(0, eq)
      const value = eq < 0 ? undefined : part.slice(eq + 1)
      if (!(LIBVIRT_PARAMS as readonly string[]).includes(name)) return `parameter ${JSON.stringify(name)} is not allowed (allowed: ${LIBVIRT_PARAMS.join(', ')})`
      if (seen.has(name)) return `parameter ${name} is given twice`
      seen.add(name)
      if (transport === undefined || !(KVM_SSH_TRANSPORTS as readonly string[]).includes(transport)) return `parameter ${name} is for ssh transports only`
      if (name === 'no_tty' && value !== '0' && value !== '1') return 'no_tty must be 0 or 1'
      if (name === 'keyfile') {
        if (policy.sshKeyDir === undefined) return 'keyfile is not accepted: KVM_SSH_KEY_DIR is not set'
        const dir = policy.sshKeyDir.replace(/\/+$/, '')
        const file = value?.startsWith(`${dir}/`) === true ? value.slice(dir.length + 1) : undefined
        if (file === undefined || !new RegExp(`^${KEY_FILE}$`).test(file)) return `keyfile must be a file directly in KVM_SSH_KEY_DIR (${dir}/<name>)`
      }
    }
  }
  if (policy.allowedUris !== undefined && !policy.allowedUris.includes(uri)) return 'this URI is not in KVM_ALLOWED_URIS'
  return undefined
}

/** What a kvm connection stands for: the libvirt URI to open and the domain's name or UUID. */
export interface KvmTarget { uri: string, domain: string }

const checkKvmUri = compile(KvmUriConnection, 'kvm connection')
const checkKvmHost = compile(KvmHostConnection, 'kvm connection')
/** What the structured form's members must be, said better than "Expected string to match '^…$'". */
const KVM_EXPECTED: Record<string, string> = {
  transport: `expected one of ${KVM_TRANSPORTS.join(', ')}`,
  host: 'expected a host name or IP address ([…] for IPv6), not beginning with "-"',
  user: 'expected a login name (letters, digits, ".", "_", "-"; not beginning with "-"; no password)',
  keyFile: 'expected the name of a file in KVM_SSH_KEY_DIR (letters, digits, ".", "_", "-"; no "/"; not beginning with "." or "-")'
}

/**
 * Checks a kvm connection in either form and gives the URI it stands for (built in code for the structured
 * form). Throws a ValidationError naming the member (`uri`, `host`, `keyFile`…) otherwise. The API calls it
 * before storing a record and the agents again before any libvirt call.
 */
export function kvmTarget (connection: unknown, policy: KvmPolicy = {}): KvmTarget {
  const fail = (field: string, why: string): never => { throw new ValidationError(`${field}: ${why}`, field) }
  if (typeof connection === 'object' && connection !== null && 'transport' in connection) {
    let c: KvmHostConnection
    try { c = checkKvmHost.parse(connection) } catch (err) {
      const field = (err as ValidationError).details?.field
      const expected = typeof field === 'string' ? KVM_EXPECTED[field] : undefined
      if (expected === undefined || typeof (connection as Record<string, unknown>)[field as string] !== 'string') throw err
      return fail(field as string, expected)
    }
    let query = ''
    if (c.keyFile !== undefined) {
      if (!KVM_SSH_TRANSPORTS.includes(c.transport)) fail('keyFile', `a key file is for ssh transports only (${KVM_SSH_TRANSPORTS.join(', ')})`)
      if (policy.sshKeyDir === undefined) fail('keyFile', 'not accepted: KVM_SSH_KEY_DIR is not set')
      query = `?keyfile=${(policy.sshKeyDir ?? '').replace(/\/+$/, '')}/${c.keyFile}`
    }
    const uri = `qemu+${c.transport}://${c.user === undefined ? '' : `${c.user}@`}${c.host}${c.port === undefined ? '' : `:${c.port}`}/system${query}`
    const problem = libvirtUriProblem(uri, policy)
    if (problem !== undefined) fail('host', `${problem} (${uri})`)
    return { uri, domain: c.domain }
  }
  const c = checkKvmUri.parse(connection)
  const problem = libvirtUriProblem(c.uri, policy)
  if (problem !== undefined) fail('uri', problem)
  return { uri: c.uri, domain: c.domain }
}

/** The oVirt engine's web context: fixed by the engine (its SSO lives beside the API under it). */
export const OVIRT_ENGINE_CONTEXT = '/ovirt-engine'

/**
 * An oVirt engine URL as users write it, in the one form a server record stores: `https://host[:port]/…/ovirt-engine`.
 * Accepted: the engine's base (`https://engine.example/ovirt-engine`), its API (`…/ovirt-engine/api`, the form of
 * the SDKs and the engine's documentation, or `…/api/v4`), each with or without a trailing slash; the context may
 * sit under a reverse proxy's prefix (`https://gw.example/dc1/ovirt-engine`). Refused: anything but https, user
 * info, a query or fragment, empty path segments, and a path that does not end in `/ovirt-engine` once the API
 * part is taken off. Returns the normal form, or why `url` is not an engine URL.
 */
export function ovirtEngineUrl (url: string): { url: string } | { problem: string } {
  if (/[?#]/.test(url)) return { problem: 'no query or fragment: expected the engine URL, such as https://engine.example/ovirt-engine' }
  let u: URL
  try { u = new URL(url) } catch { return { problem: 'not a URL: expected https://engine.example/ovirt-engine' } }
  if (u.protocol !== 'https:') return { problem: 'https only: the password goes to the engine' }
  if (u.username !== '' || u.password !== '') return { problem: 'no user name or password in the URL: use connection.username and connection.password' }
  if (u.hostname === '') return { problem: 'no host: expected https://engine.example/ovirt-engine' }
  const path = u.pathname.replace(/\/+$/, '').replace(/\/api(\/v4)?$/, '')
  if (!path.endsWith(OVIRT_ENGINE_CONTEXT) || path.split('/').slice(1).some(s => s === '')) {
    return { problem: `the path must end in ${OVIRT_ENGINE_CONTEXT} (or ${OVIRT_ENGINE_CONTEXT}/api), as in https://engine.example/ovirt-engine` }
  }
  return { url: u.origin + path }
}

/** `agent: 'ovirt'`: the engine's base URL (`https://engine.example/ovirt-engine`), an account and the VM's id. */
export const OvirtConnection = Type.Object({
  url: Type.String({ minLength: 1, maxLength: 512, pattern: '^https://', description: 'HTTPS only: the password goes to the engine. With or without /api and a trailing slash; stored as https://engine.example/ovirt-engine (see ovirtEngineUrl)' }),
  username: Type.String({ minLength: 1, maxLength: 128 }),
  password: Secret,
  vmId: Type.String({ minLength: 1, maxLength: 64 }),
  caCert: Type.Optional(Type.String({ maxLength: 16384, description: 'PEM of the engine CA' }))
}, { additionalProperties: false })
export type OvirtConnection = Static<typeof OvirtConnection>
