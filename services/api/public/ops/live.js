// Where the dashboard's live updates come from: the only file of the page that knows. Today the job events
// of the API's own feed for the dashboard session (GET /ops/api/events, cookie-authenticated: the page holds
// no key, and EventSource cannot send one). Moving to the Redis event stream behind /v1/events (with console
// session events and Last-Event-ID resumption) is this file (which event names to listen to) plus, on the
// server, the /ops/api/events handler in services/api/src/ops/routes.ts (read that stream instead of the
// waiter's feed). The rest of the page calls subscribe() and reads {type, jobId, state, serverId, tenantId, kind, at}.

/**
 * Calls onEvent for every job state change; onStatus(true|false) as the stream connects and drops
 * (EventSource reconnects by itself; the page re-reads what it shows on each reconnect). Returns a stop function.
 */
export function subscribe (onEvent, onStatus) {
  let es
  const open = () => {
    es = new EventSource('/ops/api/events')
    es.addEventListener('open', () => onStatus(true))
    es.addEventListener('error', () => onStatus(false))
    es.addEventListener('job', (m) => {
      try { onEvent({ type: 'job', ...JSON.parse(m.data) }) } catch { /* a malformed event is skipped */ }
    })
    // The session ended (logout, expiry, its key deleted): the page asks to log in again.
    es.addEventListener('end', () => { es.close(); onStatus(false, 'ended') })
  }
  open()
  return () => es.close()
}
