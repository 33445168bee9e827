/**
 * Test support for pipeline tests (the receiver's and the agents'): the real receiver and agents processes
 * (startStack), and jobs created exactly as the API creates them (a record in the JobStore, then the Job
 * published to `<ns>.jobs`).
 */
import { randomUUID } from 'node:crypto'
import { AmqpClient, names, type Names } from '@porthole/shared/amqp'
import type { AgentType, ConsoleParams, Job, JobKind, JobRecord, PowerAction, ServerSecrets, StoredServer } from '@porthole/contracts'
import { isTerminal } from '@porthole/contracts'
import { SecretBox, sealServerSecrets } from '@porthole/shared/crypto'
import { createLogger } from '@porthole/shared/logging'
import { JobStore, ServerStore, TenantStore, createRedis, type Redis } from '@porthole/shared/store'
import { waitFor, type Scope } from './index.js'
import { startStack, type Stack, type StackOptions } from './stack.js'

export interface Pipeline {
  stack: Stack
  n: Names
  redis: Redis
  jobs: JobStore
  servers: ServerStore
  amqp: AmqpClient
  box: SecretBox
  /** The console transit key's box (what agents seal console targets with for the gateway). */
  transit: SecretBox
  tenantId: string
  /** Registers a server of the pipeline's tenant, or of `tenantId` (any id: the receiver reads only the server's). */
  addServer: (agent: AgentType, connection: Record<string, unknown>, secrets?: ServerSecrets, tenantId?: string) => Promise<StoredServer>
  /** Creates the job record and publishes the job, as the API does; returns the job. */
  submit: (server: StoredServer, kind: JobKind, o?: { action?: PowerAction, deadlineMs?: number, console?: ConsoleParams }) => Promise<Job>
  /** Waits until the job is in a terminal state and returns its record. */
  finished: (jobId: string, timeoutMs?: number) => Promise<JobRecord>
  /** Every message dead-lettered to `<ns>.dead` or `<ns>.dead.interactive` so far (raw bodies). */
  dead: () => Promise<string[]>
}

export async function pipeline (t: Scope, o: StackOptions = {}): Promise<Pipeline> {
  const stack = await startStack(t, {
    services: ['receiver', 'agents'],
    ...o,
    envFor: { ...o.envFor, agents: { AGENT_TYPES: 'kvm', KVM_SHUTDOWN_WAIT_MS: '1000', ...o.envFor?.agents } }
  })
  const log = createLogger({ name: 'test', level: 'silent' })
  const n = names(stack.ns)
  const redis = createRedis(stack.svc.redisUrl, log, 'test')
  const amqp = new AmqpClient({ url: stack.svc.rabbitmqUrl, namespace: stack.ns, log, name: 'test' })
  await amqp.start()
  t.after(async () => { await amqp.close(); redis.disconnect() })
  const jobs = new JobStore(redis, stack.ns)
  const servers = new ServerStore(redis, stack.ns)
  const tenant = await new TenantStore(redis, stack.ns).create('pipeline test')
  const box = SecretBox.fromSettings({ PORTHOLE_SECRET_KEY: stack.secretKey, PORTHOLE_SECRET_KEY_ID: 'k1', PORTHOLE_OLD_SECRET_KEYS: '' })
  const transit = SecretBox.forConsoleTransit({ CONSOLE_TRANSIT_KEY: stack.transitKey, CONSOLE_TRANSIT_KEY_ID: 't1', CONSOLE_OLD_TRANSIT_KEYS: '' })
  const deadBodies: string[] = []

  return {
    stack, n, redis, jobs, servers, amqp, box, transit, tenantId: tenant.id,
    async addServer (agent, connection, secrets, tenantId = tenant.id) {
      const now = new Date().toISOString()
      const s = { id: randomUUID(), tenantId, name: `test-${agent}`, agent, connection, secretPaths: [], createdAt: now, updatedAt: now } as unknown as StoredServer
      if (secrets !== undefined) {
        const sealed = sealServerSecrets(box, s, secrets)
        if (sealed !== undefined) s.sealed = sealed
        if (secrets.connection?.password !== undefined) s.secretPaths.push('connection.password')
        if (secrets.console?.password !== undefined) s.secretPaths.push('console.password')
      }
      await servers.put(s)
      return s
    },
    async submit (server, kind, so = {}) {
      const now = Date.now()
      const job = {
        id: randomUUID(), kind, serverId: server.id, tenantId: server.tenantId, requestedBy: 'test',
        createdAt: new Date(now).toISOString(), deadline: new Date(now + (so.deadlineMs ?? 20_000)).toISOString(),
        attempt: 1, traceId: randomUUID().replaceAll('-', ''),
        ...(so.action === undefined ? {} : { action: so.action }), ...(so.console === undefined ? {} : { console: so.console })
      } as Job
      await jobs.create(job)
      await amqp.publish(n.jobsExchange, n.receiverKeyOf(job.kind), job)
      return job
    },
    async finished (jobId, timeoutMs = 20_000) {
      return await waitFor(async () => {
        const r = await jobs.get(jobId)
        return r !== undefined && isTerminal(r.state) ? r : undefined
      }, timeoutMs, `job ${jobId} to finish`)
    },
    async dead () {
      const ch = await amqp.rawChannel()
      try {
        for (const q of [n.deadQueue, n.deadInteractiveQueue]) {
          for (;;) {
            const m = await ch.get(q, { noAck: true })
            if (m === false) break
            deadBodies.push(m.content.toString('utf8'))
          }
        }
      } finally {
        await ch.close().catch(() => {})
      }
      return [...deadBodies]
    }
  }
}

/** The states of a job's history, in order. */
export function states (r: JobRecord): string[] {
  return r.history.map(h => h.state)
}

/** The time a job entered `state`, in epoch ms. */
export function at (r: JobRecord, state: string): number {
  const h = r.history.find(x => x.state === state)
  if (h === undefined) throw new Error(`job ${r.id} never was ${state}: ${states(r).join(' → ')}`)
  return Date.parse(h.at)
}
