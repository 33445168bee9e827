import assert from 'node:assert/strict'
/** An AgentContext for driver tests, with a deadline and a logger whose every line the test can read. */
import { randomUUID } from 'node:crypto'
import { Writable } from 'node:stream'
import type { ConsoleJob, PowerJob, ServerSecrets, StoredServer, StoredServerOf } from '@porthole/contracts'
import { createLogger } from '@porthole/shared/logging'
import { PortholeError } from '@porthole/contracts/errors'
import type { AgentContext } from '../src/driver.js'

/**
 * The job of a driver test: a console job at run time, typed to fit every driver call (power, status, console),
 * as the drivers read only its id and its console parameters.
 */
export type TestJob = Omit<ConsoleJob, 'kind'> & Omit<PowerJob, 'kind'> & { kind: never }

/** A driver call's context for tests. */
export type TestCtx<S extends StoredServer = StoredServer> = Omit<AgentContext<S>, 'job'> & { job: TestJob, lines: string[] }

export function agentContext<A extends 'ipmi' | 'ovirt'> (o: { agent: A, connection: Record<string, unknown>, console?: Record<string, unknown>, secrets: ServerSecrets, deadlineMs?: number, lines?: string[], ttlSeconds?: number }): TestCtx<StoredServerOf<A>> {
  const lines = o.lines ?? []
  const sink = new Writable({ write (chunk: Buffer, _enc, cb) { lines.push(chunk.toString()); cb() } })
  const deadlineMs = o.deadlineMs ?? 15_000
  const now = new Date().toISOString()
  // Any connection, as the runner would pass only a checked one: some tests are about what a driver does with it.
  const server = {
    id: randomUUID(), tenantId: randomUUID(), name: 'test', agent: o.agent, connection: o.connection, secretPaths: ['connection.password'], createdAt: now, updatedAt: now
  } as unknown as StoredServerOf<A>
  if (o.console !== undefined) (server as StoredServer).console = o.console
  return {
    job: testJob(server, deadlineMs, o.ttlSeconds) as unknown as TestJob,
    server,
    secrets: o.secrets,
    signal: AbortSignal.timeout(deadlineMs),
    deadline: new Date(Date.now() + deadlineMs),
    log: createLogger({ name: 'agents-test', level: 'debug', destination: sink }),
    lines
  }
}

/** The job a driver call runs for (a console job, so console tests see the session's lifetime). */
export function testJob (server: StoredServer, deadlineMs: number, ttlSeconds = 7200): ConsoleJob {
  return {
    id: randomUUID(), kind: 'console', serverId: server.id, tenantId: server.tenantId, requestedBy: 'test',
    console: { protocol: 'vnc', ttlSeconds, singleUse: false },
    createdAt: new Date().toISOString(), deadline: new Date(Date.now() + deadlineMs).toISOString(), attempt: 1, traceId: 'test'
  }
}

/** Awaits a failure and checks its class: the PortholeError, for more assertions. */
export async function rejectsWith (p: Promise<unknown>, code: string): Promise<PortholeError> {
  try {
    await p
  } catch (err) {
    assert.ok(err instanceof PortholeError, `expected a PortholeError, got ${String(err)}`)
    assert.equal(err.code, code, err.message)
    return err
  }
  assert.fail(`expected a ${code} error`)
}
