/**
 * Server credentials bound to where they are sent. Each password is sealed in a box of its own whose
 * additional authenticated data names the server, the password's purpose (`connection` or `console`) and
 * its destination: a canonical form of the record's fields the password is sent to (ipmi host, port,
 * username and cipher suite; ovirt url, username and CA; kvm uri or transport, host, port, user and key file;
 * console host and port). A record, or the copy of it in a
 * job message, whose destination was changed anywhere but through the API no longer opens, so a secret
 * cannot be redirected to another host by editing Redis or a message on the broker.
 */
import { createHash } from 'node:crypto'
import type { AgentType, SealedSecrets, SecretPath, SecretPurpose, ServerSecrets, StoredServer } from '@porthole/contracts'
import { PortholeError } from '@porthole/contracts/errors'
import type { SecretBox } from './index.js'

/** The part of a server record that says where its secrets go. */
export interface ServerDestination { id: string, agent: AgentType, connection: Record<string, unknown>, console?: Record<string, unknown> | undefined }

const CONNECTION_FIELDS: Readonly<Record<AgentType, readonly string[]>> = {
  // kvm records carry no password today; both forms of their connection are bound all the same.
  kvm: ['uri', 'transport', 'host', 'port', 'user', 'keyFile'],
  // The cipher suite too: an edit down to suite 0-2 would send the session unencrypted or unauthenticated.
  ipmi: ['host', 'port', 'username', 'cipherSuite'],
  ovirt: ['url', 'username', 'caCert']
}
const CONSOLE_FIELDS: readonly string[] = ['host', 'port']

/** The fields of `connection` (or `console`) whose values a secret of `purpose` is sent to, in a fixed order. */
export function destinationFields (agent: AgentType, purpose: SecretPurpose): readonly string[] {
  return purpose === 'console' ? CONSOLE_FIELDS : CONNECTION_FIELDS[agent]
}

/** The purpose of the secret at a path of the record. */
export function purposeOf (path: SecretPath): SecretPurpose {
  return path === 'console.password' ? 'console' : 'connection'
}

function canonical (field: string, v: unknown): unknown {
  if (v === undefined || v === null) return null
  // A PEM is long; its digest binds it as well. Whitespace-only is no CA to the ovirt agent.
  if (field === 'caCert') return typeof v === 'string' && v.trim() !== '' ? createHash('sha256').update(v).digest('hex') : null
  return v
}

/** The canonical destination of a purpose's secret: the destination fields and their values, as JSON. */
export function secretDestination (agent: AgentType, purpose: SecretPurpose, part: Record<string, unknown> | undefined): string {
  return JSON.stringify(destinationFields(agent, purpose).map(f => [f, canonical(f, part?.[f])]))
}

/**
 * The first destination field whose value differs between two versions of a record's part, or undefined
 * when the secret of `purpose` would still go where it went.
 */
export function changedDestinationField (agent: AgentType, purpose: SecretPurpose, before: Record<string, unknown> | undefined, after: Record<string, unknown> | undefined): string | undefined {
  return destinationFields(agent, purpose).find(f => JSON.stringify(canonical(f, before?.[f])) !== JSON.stringify(canonical(f, after?.[f])))
}

/** The additional authenticated data of a server secret's box. */
export function secretAad (serverId: string, purpose: SecretPurpose, destination: string): string {
  return `porthole:server-secret:v2\n${serverId}\n${purpose}\n${destination}`
}

function partOf (s: ServerDestination, purpose: SecretPurpose): Record<string, unknown> | undefined {
  return purpose === 'console' ? s.console : s.connection
}

function aadOf (s: ServerDestination, purpose: SecretPurpose): string {
  return secretAad(s.id, purpose, secretDestination(s.agent, purpose, partOf(s, purpose)))
}

/** Seals each password of `secrets` in its own box, bound to the server, its purpose and its destination. */
export function sealServerSecrets (box: SecretBox, s: ServerDestination, secrets: ServerSecrets): SealedSecrets | undefined {
  const out: SealedSecrets = {}
  for (const purpose of ['connection', 'console'] as const) {
    const password = secrets[purpose]?.password
    if (password !== undefined) out[purpose] = box.seal({ password }, aadOf(s, purpose))
  }
  return out.connection === undefined && out.console === undefined ? undefined : out
}

/**
 * Opens the secret of one purpose against the record's current destination. Throws an `auth` error when
 * the box does not open for it (the destination changed outside the API, or the box was tampered with),
 * an `internal` one when its key is not configured. The message names neither the secret nor the place.
 */
export function openServerSecret (box: SecretBox, s: StoredServer, purpose: SecretPurpose): { password?: string } | undefined {
  const sealed = s.sealed?.[purpose]
  if (sealed === undefined) {
    if (s.secrets !== undefined && s.secretPaths.some(p => purposeOf(p) === purpose)) {
      throw new PortholeError('auth', `the ${purpose} password of server ${s.id} is sealed in the earlier form, not bound to its destination: the API's re-seal pass upgrades it at start, or set ${purpose}.password again`, { retryable: false })
    }
    return undefined
  }
  if (!box.knows(sealed.kid)) throw new PortholeError('internal', `the ${purpose} password of server ${s.id} is sealed with key ${sealed.kid}, which is not configured`, { retryable: false })
  try {
    return box.open<{ password?: string }>(sealed, aadOf(s, purpose))
  } catch (err) {
    throw new PortholeError('auth', `the ${purpose} password of server ${s.id} does not open for the record's ${purpose} destination (${destinationFields(s.agent, purpose).join(', ')}): the record changed outside the API; set ${purpose}.password again`, { retryable: false, cause: err })
  }
}

/** Every secret of a record, opened against its current destinations (see `openServerSecret`). */
export function openServerSecrets (box: SecretBox, s: StoredServer): ServerSecrets {
  const out: ServerSecrets = {}
  for (const purpose of ['connection', 'console'] as const) {
    const opened = openServerSecret(box, s, purpose)
    if (opened !== undefined) out[purpose] = opened
  }
  return out
}

/** Opens a record's secrets in the earlier form (one box bound to the server's id only). */
export function openLegacySecrets (box: SecretBox, s: StoredServer): ServerSecrets | undefined {
  return s.secrets === undefined ? undefined : box.open<ServerSecrets>(s.secrets, s.id)
}
