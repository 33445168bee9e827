// The station page's states (public/station/machine.js): what each event leads to, and that events a state
// does not expect (a second tap, a late answer) change nothing.
import { test } from 'node:test'
import assert from 'node:assert/strict'

type State = { name: string, message: string, sessionId?: string }
type Effect = { do: string, [k: string]: unknown }
interface Machine {
  MESSAGES: Record<string, string>
  ENDED_MS: number
  RETRY_MIN_MS: number
  RETRY_MAX_MS: number
  initial: () => State
  step: (s: State, e: Record<string, unknown>) => { state: State, effects: Effect[] }
  nextPicture: (i: number, n: number) => number
}
// dist/test → services/api/public/station
const m = await import(new URL('../../public/station/machine.js', import.meta.url).href) as Machine

/** Runs events from the initial state; returns every step. */
function run (...events: Array<Record<string, unknown>>): Array<{ state: State, effects: Effect[] }> {
  let s = m.initial()
  return events.map(e => { const r = m.step(s, e); s = r.state; return r })
}

test('a touch asks for one desktop, shows it and watches it; Finish ends it and the pictures come back', () => {
  const [touch, second, desktop, finish, ended, timer] = run(
    { type: 'touch' }, { type: 'touch' },
    { type: 'desktop', sessionId: 's1', url: 'http://gw/s/s1#tok', expiresAt: 'x' },
    { type: 'finish' }, { type: 'ended', sessionId: 's1' }, { type: 'timer' })
  assert.equal(touch?.state.name, 'starting')
  assert.equal(touch?.state.message, 'Starting your desktop…')
  assert.deepEqual(touch?.effects, [{ do: 'handout' }])
  assert.deepEqual(second?.effects, [], 'a second tap while starting starts nothing')
  assert.equal(desktop?.state.name, 'live')
  assert.deepEqual(desktop?.effects.map(e => e.do), ['show', 'watch'])
  assert.equal(desktop?.effects[0]?.url, 'http://gw/s/s1#tok')
  assert.deepEqual(finish?.effects, [{ do: 'finish', sessionId: 's1' }])
  assert.equal(ended?.state.name, 'ended')
  assert.equal(ended?.state.message, 'Session ended. Thank you!')
  assert.deepEqual(ended?.effects.map(e => e.do), ['hide', 'later'])
  assert.equal(timer?.state.name, 'idle')
  assert.deepEqual(timer?.effects, [{ do: 'pictures' }])
})

test('an empty pool says so and retries after Retry-After, within bounds', () => {
  const [, empty, retry] = run({ type: 'touch' }, { type: 'empty', retryAfterSeconds: 5 }, { type: 'retry' })
  assert.equal(empty?.state.message, 'All desktops are busy, trying again…')
  assert.deepEqual(empty?.effects, [{ do: 'retry', ms: 5000 }])
  assert.equal(retry?.state.name, 'starting')
  assert.deepEqual(retry?.effects, [{ do: 'handout' }])
  assert.deepEqual(run({ type: 'touch' }, { type: 'empty', retryAfterSeconds: 3600 })[1]?.effects, [{ do: 'retry', ms: m.RETRY_MAX_MS }])
  assert.deepEqual(run({ type: 'touch' }, { type: 'empty' })[1]?.effects, [{ do: 'retry', ms: m.RETRY_MIN_MS }])
})

test('a session that ends by itself (maximum, revoked — the idle timeout revokes —, the VM gone) returns to the pictures; another session\'s end does not', () => {
  const start = [{ type: 'touch' }, { type: 'desktop', sessionId: 's1', url: 'u', expiresAt: 'x' }]
  const other = run(...start, { type: 'ended', sessionId: 's2', reason: 'expired' })[2]
  assert.equal(other?.state.name, 'live')
  for (const [reason, text] of [['expired', /time for one session is up/], ['revoked', /idle for too long, or closed by the staff/], ['gone', /^Session ended\.$/]] as const) {
    const r = run(...start, { type: 'ended', sessionId: 's1', reason })[2]
    assert.equal(r?.state.name, 'ended')
    assert.match(r?.state.message ?? '', text)
    assert.deepEqual(r?.effects.map(e => e.do), ['hide', 'later'])
  }
})

test('a refused station stays refused whatever happens next', () => {
  const steps = run({ type: 'touch' }, { type: 'refused', message: 'this station link is not valid' }, { type: 'touch' }, { type: 'timer' }, { type: 'desktop', sessionId: 's', url: 'u' })
  assert.equal(steps[1]?.state.name, 'refused')
  assert.deepEqual(steps[1]?.effects, [{ do: 'hide' }])
  for (const s of steps.slice(2)) { assert.equal(s.state.name, 'refused'); assert.deepEqual(s.effects, []) }
  assert.equal(steps[4]?.state.message, 'this station link is not valid')
})

test('a failed hand-out says so, then a touch tries again or the pictures come back', () => {
  const [, failed, again] = run({ type: 'touch' }, { type: 'error' }, { type: 'touch' })
  assert.equal(failed?.state.name, 'failed')
  assert.deepEqual(failed?.effects, [{ do: 'later', ms: m.ENDED_MS, event: { type: 'timer' } }])
  assert.equal(again?.state.name, 'starting')
  assert.equal(run({ type: 'touch' }, { type: 'error' }, { type: 'timer' })[2]?.state.name, 'idle')
})

test('the slideshow cycles through the pictures', () => {
  assert.deepEqual([0, 1, 2].map(i => m.nextPicture(i, 3)), [1, 2, 0])
  assert.equal(m.nextPicture(0, 0), 0)
})
