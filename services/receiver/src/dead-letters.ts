/**
 * Dead letters: every dead letter also reaches the receiver (`<ns>.dead.watch`; the copy in `<ns>.dead` stays
 * for operators). A job message RabbitMQ gave up on ends its job now instead of at its deadline: past the
 * delivery limit (its handlers failed again and again) the job fails as `unavailable`, retryable; past its TTL
 * (an interactive job nobody took in time) it times out. Messages our handlers dead-lettered were dealt with
 * by them.
 */
import { DELIVERY_LIMIT, type Delivery, type Disposition } from '@porthole/shared/amqp'
import { jobIdOf } from '@porthole/contracts'
import { brief } from '@porthole/shared/logging'
import { DEADLINE_FAILURE, type ReceiverParts } from './parts.js'

export function deadLetterWatch (p: ReceiverParts): (d: Delivery) => Promise<Disposition> {
  const log = p.log.child({ component: 'jobs' })
  return async function onDeadLetter (d) {
    // The newest death is the one that brought it here (a power job may have expired in the delay queue before).
    const death = (d.raw.properties.headers?.['x-death'] as Array<{ reason?: unknown, queue?: unknown }> | undefined)?.[0]
    const reason = death?.reason
    // A Job, or an AgentRequest / ConsoleMintRequest holding one.
    const id = jobIdOf(d.body)
    if (id === undefined || (reason !== 'delivery_limit' && reason !== 'expired')) return 'ack'
    const queue = String(death?.queue ?? 'a queue')
    try {
      // Past the delivery limit: most often a dependency (Redis) that stayed down through every retry, so the
      // caller may try again; a poison message is dead-lettered by its handler instead, which fails it.
      const r = reason === 'expired'
        ? await p.record(id, 'timed_out', { error: DEADLINE_FAILURE })
        : await p.record(id, 'failed', { error: { code: 'unavailable', message: `the job's message was dead-lettered from ${queue} after ${DELIVERY_LIMIT} failed deliveries`, retryable: true } })
      if (r.status === 'ok') {
        log.warn({ jobId: id, reason, queue }, reason === 'expired' ? 'job expired in its queue; timed out' : 'job dead-lettered after its delivery limit; failed')
        await p.releaseIfPower(id)
      }
      return 'ack'
    } catch (err) {
      log.warn({ jobId: id, err: brief(err) }, 'could not end a dead-lettered job; requeueing')
      return 'requeue'
    }
  }
}
