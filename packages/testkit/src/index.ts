/**
 * Test support: real RabbitMQ and Redis, found or started, never faked. The order is: the services named by
 * `RABBITMQ_URL` / `REDIS_URL`; else the local defaults when they answer; else containers started with
 * testcontainers where Docker runs. When none works the test fails with a message saying what to set: a
 * missing RabbitMQ or Redis fails a test, never skips it.
 */
import { randomBytes } from 'node:crypto'
import { connect as netConnect } from 'node:net'
import amqp from 'amqplib'
import { Redis } from 'ioredis'
import { deleteTopology } from '@porthole/shared/amqp'

type Testcontainers = typeof import('testcontainers') // eslint-disable-line @typescript-eslint/consistent-type-imports

export interface Services { rabbitmqUrl: string, redisUrl: string }

const LOCAL = { rabbitmqUrl: 'amqp://guest:guest@127.0.0.1:5672', redisUrl: 'redis://127.0.0.1:6379' }
let found: Promise<Services> | undefined

/** The RabbitMQ and Redis the tests use (looked up once per process). */
export async function services (): Promise<Services> {
  found ??= findServices()
  return await found
}

async function findServices (): Promise<Services> {
  let rabbitmqUrl = process.env.RABBITMQ_URL
  let redisUrl = process.env.REDIS_URL
  if (rabbitmqUrl === undefined && await answers(LOCAL.rabbitmqUrl)) rabbitmqUrl = LOCAL.rabbitmqUrl
  if (redisUrl === undefined && await answers(LOCAL.redisUrl)) redisUrl = LOCAL.redisUrl
  if (rabbitmqUrl === undefined || redisUrl === undefined) {
    const started = await fromContainers(rabbitmqUrl === undefined, redisUrl === undefined)
    rabbitmqUrl ??= started.rabbitmqUrl
    redisUrl ??= started.redisUrl
  }
  if (rabbitmqUrl === undefined || redisUrl === undefined) throw new Error('no RabbitMQ or Redis: set RABBITMQ_URL and REDIS_URL, run them locally, or run Docker')
  return { rabbitmqUrl, redisUrl }
}

async function answers (url: string): Promise<boolean> {
  const u = new URL(url)
  return await new Promise(resolve => {
    const s = netConnect({ host: u.hostname, port: Number(u.port) })
    const done = (ok: boolean): void => { s.destroy(); resolve(ok) }
    s.setTimeout(500, () => done(false))
    s.once('connect', () => done(true))
    s.once('error', () => done(false))
  })
}

async function fromContainers (rabbit: boolean, redis: boolean): Promise<Partial<Services>> {
  let tc: Testcontainers
  try {
    tc = await import('testcontainers')
  } catch (err) {
    throw new Error(`RabbitMQ or Redis missing and testcontainers unavailable (${(err as Error).message}): set RABBITMQ_URL and REDIS_URL`)
  }
  const out: Partial<Services> = {}
  try {
    if (rabbit) {
      const c = await new tc.GenericContainer('rabbitmq:3.13-alpine').withExposedPorts(5672).withWaitStrategy(tc.Wait.forLogMessage('Server startup complete')).start()
      out.rabbitmqUrl = `amqp://guest:guest@${c.getHost()}:${c.getMappedPort(5672)}`
    }
    if (redis) {
      const c = await new tc.GenericContainer('redis:7-alpine').withExposedPorts(6379).start()
      out.redisUrl = `redis://${c.getHost()}:${c.getMappedPort(6379)}`
    }
  } catch (err) {
    throw new Error(`RabbitMQ or Redis missing, and no container could be started (${(err as Error).message}): set RABBITMQ_URL and REDIS_URL`)
  }
  return out
}

/** What a helper needs of a test to clean up after it: node:test's TestContext, or a script's own list. */
export interface Scope { after: (fn: () => Promise<void>) => void }

/** A namespace unique to one test, for queues, exchanges and Redis keys. */
export function uniqueNamespace (prefix = 't'): string {
  return `${prefix}-${randomBytes(5).toString('hex')}`
}

/** Deletes the namespace's queues, exchanges and Redis keys. */
export async function dropNamespace (ns: string, s: Services): Promise<void> {
  const conn = await amqp.connect(s.rabbitmqUrl)
  try {
    const ch = await conn.createChannel()
    await deleteTopology(ch, ns)
    await ch.close()
  } finally {
    await conn.close()
  }
  const r = new Redis(s.redisUrl)
  try {
    let cursor = '0'
    do {
      const [next, batch] = await r.scan(cursor, 'MATCH', `${ns}:*`, 'COUNT', 1000)
      cursor = next
      if (batch.length > 0) await r.del(...batch)
    } while (cursor !== '0')
  } finally {
    r.disconnect()
  }
}

/** Polls `fn` until it returns a value other than undefined/false, or throws after `timeoutMs`. */
export async function waitFor<T> (fn: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = 10_000, what = 'condition', intervalMs = 25): Promise<T> {
  const end = Date.now() + timeoutMs
  let last: unknown
  for (;;) {
    try {
      const v = await fn()
      if (v !== undefined && v !== false) return v
    } catch (err) { last = err }
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last === undefined ? '' : `: ${(last as Error).message}`}`)
    await new Promise(resolve => setTimeout(resolve, intervalMs))
  }
}

/**
 * Resolves as `p` does, or rejects naming `what` when `p` has not settled within `timeoutMs`. A bound on a wait
 * (so that a hang fails with a clear message), never a latency assertion: make the bound generous.
 */
export async function within<T> (p: Promise<T>, timeoutMs: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)), timeoutMs)
  })
  try {
    return await Promise.race([p, late])
  } finally {
    clearTimeout(timer)
  }
}

/**
 * Waits until `read()` has stopped changing (within `tolerance` of where it stood, over `polls` reads
 * `intervalMs` apart), or throws after `timeoutMs`; returns that value. For "the flow has stopped"
 * (back-pressure): a flow that never stops reaches its end and stops there, so the caller's assertion on the
 * value still tells the two apart. `tolerance` leaves out small traffic that goes on regardless (pongs).
 */
export async function settledValue (read: () => number, what: string, o: { polls?: number, intervalMs?: number, timeoutMs?: number, tolerance?: number } = {}): Promise<number> {
  const polls = o.polls ?? 5
  const tolerance = o.tolerance ?? 0
  let anchor = read()
  let same = 0
  return await waitFor(() => {
    const now = read()
    if (Math.abs(now - anchor) <= tolerance) same++
    else { anchor = now; same = 0 }
    return same >= polls ? now : undefined
  }, o.timeoutMs ?? 30_000, what, o.intervalMs ?? 100)
}

/** A 32-byte key in base64, for PORTHOLE_SECRET_KEY in tests. */
export function testSecretKey (): string {
  return randomBytes(32).toString('base64')
}

export * from './stack.js'
export * from './tcp-proxy.js'
export * from './libvirt.js'
export * from './bare-clone.js'
export * from './pipeline.js'
export * from './sse.js'
export * from './webhook-receiver.js'
export * from './console-socket.js'
export * from './redis-sentinel.js'
export * from './pools.js'
export * from './rabbit-cluster.js'
