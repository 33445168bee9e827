/**
 * Only checks, never sets, the size of libuv's thread pool. @unraid/libvirt runs each call as an AsyncWorker
 * on that pool (4 threads by default); a call to a libvirt host that went silent holds its thread until TCP
 * gives up, long after the job's deadline has ended the job. A larger pool keeps a few dead hosts from
 * stalling every other job (and the process's file and DNS work).
 *
 * The size must come from the process's environment (UV_THREADPOOL_SIZE=64: scripts/start.mjs, the
 * Dockerfile and the test stack set it; config.ts reads it as a setting, for this check): setting it from a module has no effect
 * on Node 20, whose pool has already started while the ES modules were being loaded.
 */
export const MIN_THREADPOOL_SIZE = 16

/** A warning to log when the environment leaves the pool too small; undefined when it is fine. */
export function threadPoolWarning (raw: string | undefined): string | undefined {
  const size = raw === undefined || raw === '' ? undefined : Number(raw)
  if (size !== undefined && Number.isFinite(size) && size >= MIN_THREADPOOL_SIZE) return undefined
  return `UV_THREADPOOL_SIZE is ${raw === undefined || raw === '' ? 'unset (libuv uses 4 threads)' : raw}: set it to 64 in the agents' environment, ` +
    'or a few unresponsive libvirt hosts can stall every other job'
}
