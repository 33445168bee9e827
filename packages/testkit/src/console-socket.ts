/** A console URL's WebSocket opened as the console page opens it (token in the subprotocol, the page's Origin). */
import { WebSocket } from 'ws'

/** The first bytes the console's target sends (a VNC server's `RFB 003.008\n`), or a rejection with the close code and reason. */
export async function firstBytes (url: string): Promise<string> {
  const u = new URL(url)
  const ws = new WebSocket(`ws://${u.host}${u.pathname}/ws`, ['binary', `porthole.token.${u.hash.slice(1)}`], { headers: { origin: u.origin } })
  try {
    return await new Promise<string>((resolve, reject) => {
      ws.once('message', (b: Buffer) => resolve(b.toString('latin1')))
      ws.once('close', (code, reason) => reject(new Error(`closed ${code} ${reason.toString()}`)))
      ws.once('error', reject)
    })
  } finally { ws.close() }
}
