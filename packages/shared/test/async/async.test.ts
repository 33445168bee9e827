import { test } from 'node:test'
import assert from 'node:assert/strict'
import { sleep, untilAborted } from '../../src/async/index.js'
import { TimeoutError } from '@porthole/contracts/errors'

test('sleep resolves, and rejects with a TimeoutError once its signal aborts (at once when it already has)', async () => {
  await sleep(1, new AbortController().signal)
  const ac = new AbortController()
  const long = sleep(60_000, ac.signal)
  ac.abort()
  await assert.rejects(long, TimeoutError)
  await assert.rejects(sleep(1, AbortSignal.abort()), TimeoutError)
})

test('untilAborted gives the promise\'s value, or a TimeoutError saying what when the signal aborts first', async () => {
  assert.equal(await untilAborted(Promise.resolve(7), new AbortController().signal), 7)
  const ac = new AbortController()
  let fail!: (err: Error) => void
  const never = new Promise<number>((_resolve, reject) => { fail = reject })
  const waiting = untilAborted(never, ac.signal, 'the BMC did not answer')
  ac.abort()
  await assert.rejects(waiting, (err: unknown) => err instanceof TimeoutError && err.message === 'the BMC did not answer')
  // Its late failure is ignored, not an unhandled rejection.
  fail(new Error('late'))
  await assert.rejects(untilAborted(Promise.reject(new Error('own')), new AbortController().signal), /own/)
})
