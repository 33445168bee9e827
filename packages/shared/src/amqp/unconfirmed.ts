/**
 * Publishes waiting for their confirm. When the channel (its node) goes away before the confirm comes, the
 * message is neither confirmed nor known lost: it waits here and is published again on the next connection,
 * to whichever node that is, until its caller's confirm timeout ends the wait. A message may so reach the
 * broker twice; every consumer is idempotent by job id (the receiver's state transitions, the agent's
 * at-most-once claim on the job id), so a re-publish never runs an action twice.
 */
import type { ConfirmChannel, Options } from 'amqplib'

export interface Outgoing {
  exchange: string
  routingKey: string
  content: Buffer
  options: Options.Publish & { messageId: string }
  /** Ends the caller's wait: no error when confirmed. */
  settle: (err?: Error) => void
}

export type Refusal = 'nacked' | 'returned'

export class Unconfirmed {
  /** Sent on the current channel, no confirm yet. */
  private readonly sent = new Set<Outgoing>()
  /** Lost with their channel: sent again at the next connect. */
  private readonly lost = new Set<Outgoing>()
  /** How many messages went out again after their channel was lost (for tests and logs). */
  republished = 0

  constructor (private readonly refused: (o: Outgoing, why: Refusal) => void, private readonly isReturned: (messageId: string) => boolean) {}

  /** Publishes on `ch`; a lost channel keeps the message for `replay`. */
  send (ch: ConfirmChannel, o: Outgoing): void {
    this.sent.add(o)
    try {
      ch.publish(o.exchange, o.routingKey, o.content, o.options, (err) => {
        if (!this.sent.delete(o)) return // settled meanwhile (timed out) or already moved to `lost`
        const returned = this.isReturned(o.options.messageId)
        // amqplib fails the confirms still outstanding with 'channel closed' when the channel goes away.
        if (err !== null && err !== undefined && err.message === 'channel closed') { this.lost.add(o); return }
        if (err !== null && err !== undefined) { this.refused(o, 'nacked'); return }
        if (returned) { this.refused(o, 'returned'); return }
        o.settle()
      })
    } catch {
      // The channel closed under us: the same as losing it after the write.
      this.sent.delete(o)
      this.lost.add(o)
    }
  }

  /** The channel is gone: whatever it had not confirmed waits for the next. */
  channelLost (): void {
    for (const o of this.sent) this.lost.add(o)
    this.sent.clear()
  }

  /** Sends every lost message again on the new channel; returns how many. */
  replay (ch: ConfirmChannel): number {
    const again = [...this.lost]
    this.lost.clear()
    for (const o of again) this.send(ch, o)
    this.republished += again.length
    return again.length
  }

  /** The caller stopped waiting (timeout): the message is not sent again. */
  forget (o: Outgoing): void {
    this.sent.delete(o)
    this.lost.delete(o)
  }

  /** Fails every waiting message (the client closes). */
  failAll (err: Error): void {
    const all = [...this.sent, ...this.lost]
    this.sent.clear()
    this.lost.clear()
    for (const o of all) o.settle(err)
  }
}
