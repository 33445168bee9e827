// The station page's states, as a pure function (no DOM, no network), so that what the page shows and
// does next for each event is unit-tested on its own (services/api/test/station-machine.test.ts) and
// station.js only carries it out.
//
//   idle (the pictures) ──touch/key──▶ starting ──desktop──▶ live ──finish / ended──▶ ended ──timer──▶ idle
//                                        │  ▲                                  (the VM is destroyed meanwhile)
//                                   empty│  │retry
//                                        ▼  │
//                                        busy
// A refused station (revoked, expired, a wrong secret) is `refused`, which no event leaves: the page says
// what to do and stops asking.

/** What each state says on the screen. */
export const MESSAGES = {
  idle: 'Touch the screen or press a key to start',
  starting: 'Starting your desktop…',
  busy: 'All desktops are busy, trying again…',
  live: '',
  ending: 'Ending your session…',
  ended: 'Session ended. Thank you!',
  failed: 'Something went wrong starting your desktop. Touch the screen to try again.'
}

/** How long "Session ended" (and a failure) stays up before the pictures come back, ms. */
export const ENDED_MS = 4000
/** Retry waits when the pool is empty: the server's Retry-After, within these bounds, ms. */
export const RETRY_MIN_MS = 1000
export const RETRY_MAX_MS = 10000

export function initial () {
  return { name: 'idle', message: MESSAGES.idle }
}

/**
 * The next state for `event` and the effects to carry out, as `{ state, effects }`. Effects:
 * `{ do: 'handout' }`, `{ do: 'retry', ms }`, `{ do: 'show', url, sessionId, expiresAt }`, `{ do: 'watch', sessionId }`,
 * `{ do: 'finish', sessionId }`, `{ do: 'hide' }`, `{ do: 'later', ms, event }`, `{ do: 'pictures' }`.
 * An event a state does not expect changes nothing (a second tap while starting starts no second desktop).
 */
export function step (state, event) {
  const stay = { state, effects: [] }
  if (state.name === 'refused') return stay
  if (event.type === 'refused') return { state: { name: 'refused', message: event.message }, effects: [{ do: 'hide' }] }
  switch (state.name) {
    case 'idle':
    case 'failed':
      if (event.type === 'touch') return { state: { name: 'starting', message: MESSAGES.starting }, effects: [{ do: 'handout' }] }
      if (event.type === 'timer' && state.name === 'failed') return { state: initial(), effects: [{ do: 'pictures' }] }
      return stay
    case 'starting':
      if (event.type === 'desktop') {
        return {
          state: { name: 'live', message: MESSAGES.live, sessionId: event.sessionId },
          effects: [{ do: 'show', url: event.url, sessionId: event.sessionId, expiresAt: event.expiresAt }, { do: 'watch', sessionId: event.sessionId }]
        }
      }
      if (event.type === 'empty') {
        const ms = Math.min(RETRY_MAX_MS, Math.max(RETRY_MIN_MS, (event.retryAfterSeconds ?? 1) * 1000))
        return { state: { name: 'busy', message: MESSAGES.busy }, effects: [{ do: 'retry', ms }] }
      }
      if (event.type === 'error') return { state: { name: 'failed', message: event.message ?? MESSAGES.failed }, effects: [{ do: 'later', ms: ENDED_MS, event: { type: 'timer' } }] }
      return stay
    case 'busy':
      if (event.type === 'retry') return { state: { name: 'starting', message: MESSAGES.busy }, effects: [{ do: 'handout' }] }
      return stay
    case 'live':
      if (event.type === 'finish') return { state: { name: 'ending', message: MESSAGES.ending, sessionId: state.sessionId }, effects: [{ do: 'finish', sessionId: state.sessionId }] }
      if (event.type === 'ended' && event.sessionId === state.sessionId) return ended(event.reason)
      return stay
    case 'ending':
      if (event.type === 'ended' && event.sessionId === state.sessionId) return ended('finished')
      return stay
    case 'ended':
      if (event.type === 'timer') return { state: initial(), effects: [{ do: 'pictures' }] }
      return stay
    default:
      return stay
  }
}

/** Why a session ended, in the visitor's words. */
export const ENDED_BECAUSE = {
  finished: 'Session ended. Thank you!',
  expired: 'Session ended: the time for one session is up.',
  revoked: 'Session ended: it was idle for too long, or closed by the staff.',
  gone: 'Session ended.'
}

function ended (reason) {
  return {
    state: { name: 'ended', message: ENDED_BECAUSE[reason] ?? ENDED_BECAUSE.gone },
    effects: [{ do: 'hide' }, { do: 'later', ms: ENDED_MS, event: { type: 'timer' } }]
  }
}

/** The next picture's index in a slideshow of `count` (0 when there are none). */
export function nextPicture (index, count) {
  return count === 0 ? 0 : (index + 1) % count
}
