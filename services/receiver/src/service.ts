/**
 * The receiver, composed: dispatch (`dispatch.ts`: jobs to their agents, per-server and per-tenant rules),
 * results (`results.ts`: the agents' and the gateway's updates), dead letters (`dead-letters.ts`: jobs the
 * broker gave up on) and the deadline sweeper (`sweeper.ts`), over the connections and stores of `parts.ts`.
 *
 * Every state change goes through `JobStore.transition` (one Lua script, forward-only), so several receiver
 * replicas, the deadline sweeper and late agent answers can race without moving a job backwards.
 */
import { serveMetrics } from '@porthole/shared/metrics'
import type { Delivery, Disposition } from '@porthole/shared/amqp'
import type { Logger } from '@porthole/shared/logging'
import type { ReceiverConfig } from './config.js'
import { deadLetterWatch } from './dead-letters.js'
import { dispatcher } from './dispatch.js'
import { closeRedis, receiverParts } from './parts.js'
import { resultRecorder } from './results.js'
import { startSweeper } from './sweeper.js'

export interface ReceiverDeps {
  config: ReceiverConfig
  log: Logger
  /** Aborting it during the start (e.g. SIGTERM while the broker is still unreachable) ends the start: it closes what it opened and rejects. */
  signal?: AbortSignal
}

export interface Receiver {
  /** The port of the metrics listener. */
  metricsPort: number
  /** Stops consuming, waits for running handlers, then closes the broker and Redis connections. */
  close: () => Promise<void>
}

export async function startReceiver ({ config, log, signal }: ReceiverDeps): Promise<Receiver> {
  // An end that frees a slot hands it on through the dispatcher, which records through the parts in turn.
  const parts = receiverParts(config, log, async (group) => await dispatch.drain(group))
  const dispatch = dispatcher(parts)
  const { amqp, n, redis } = parts
  const onResult = resultRecorder(parts)

  let onAbort: (() => void) | undefined
  const aborted = new Promise<never>((_resolve, reject) => {
    onAbort = () => reject(new Error('start aborted'))
    if (signal?.aborted === true) onAbort(); else signal?.addEventListener('abort', onAbort, { once: true })
  })
  try {
    await Promise.race([amqp.start(), aborted])
    // Both lanes: power jobs on quorum queues, status and console jobs on classic ones (see topology.ts).
    const handlers: Array<[string, (d: Delivery) => Promise<Disposition>]> = [
      [n.receiverQueue, dispatch.onJob], [n.receiverInteractiveQueue, dispatch.onJob],
      [n.resultsQueue, async (d) => await onResult(d, 'durable')], [n.resultsInteractiveQueue, async (d) => await onResult(d, 'interactive')],
      [n.deadWatchQueue, deadLetterWatch(parts)]
    ]
    for (const [queue, handler] of handlers) {
      await Promise.race([amqp.consume(queue, handler, { prefetch: config.RECEIVER_PREFETCH }), aborted])
    }
  } catch (err) {
    await amqp.close(0)
    await closeRedis(redis)
    throw err
  } finally {
    if (onAbort !== undefined) signal?.removeEventListener('abort', onAbort)
    aborted.catch(() => {})
  }
  const stopSweeper = startSweeper(parts, dispatch.drain)
  let listener: Awaited<ReturnType<typeof serveMetrics>>
  try {
    listener = await serveMetrics({ host: config.METRICS_HOST, port: config.RECEIVER_METRICS_PORT, registry: parts.metrics.registry, ready: () => amqp.connected && redis.status === 'ready', log })
  } catch (err) {
    await stopSweeper()
    await amqp.close(0)
    await closeRedis(redis)
    throw err
  }

  return {
    metricsPort: listener.port,
    async close () {
      await stopSweeper()
      await listener.close()
      await amqp.close()
      await closeRedis(redis)
    }
  }
}
