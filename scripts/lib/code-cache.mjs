// V8's code cache for a bundle (bundle.js.cache beside it), read by the bundle's loader (bundle-main.mjs) and
// written by it and by the build (bundle.mjs); copied beside each bundle with the loader.
//
// The file's first line names what it was made for and by whom: node's version and architecture, the bundle's
// SHA-256, the cached data's own and `build` or `start`. Any difference from this node and this bundle means
// compiling as without a cache, and so does data that is not intact (V8 checks little of it itself).
import { createHash } from 'node:crypto'
import { closeSync, openSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs'

const sha256 = (data) => createHash('sha256').update(data).digest('hex')

/** The cache file of the bundle `file`. */
export const cacheFileOf = (file) => `${file}.cache`

/** What a cache for this node and bundle (its bytes: hashing the text would encode it again) must say it was made for. */
export const keyOf = (bytes) => `${process.version} ${process.arch} ${sha256(bytes)}`

/**
 * The cached data for the bundle `file` (its bytes), if there is one made for it and intact, and by
 * whom (`build`: its top level only, `start`: what a start compiled); else why not: `missing`, `unreadable`,
 * `stale`, `corrupt`.
 */
export function readCache (file, bytes) {
  let buf
  try {
    buf = readFileSync(cacheFileOf(file))
  } catch (err) {
    return { status: err.code === 'ENOENT' ? 'missing' : 'unreadable', error: err.message }
  }
  const eol = buf.indexOf(10)
  const [node, arch, bundleHash, dataHash, madeBy] = buf.subarray(0, eol === -1 ? 0 : eol).toString('latin1').split(' ')
  if (`${node} ${arch} ${bundleHash}` !== keyOf(bytes)) return { status: 'stale' }
  const data = buf.subarray(eol + 1)
  return sha256(data) === dataHash && (madeBy === 'build' || madeBy === 'start') ? { status: 'used', data, madeBy } : { status: 'corrupt' }
}

/**
 * Writes `script`'s cached data for the bundle `file` (its bytes): to a temporary file then renamed, so
 * that a reader never sees half of one (several processes may start at once). Throws as fs does.
 */
export function writeCache (file, bytes, script, madeBy) {
  const tmp = `${cacheFileOf(file)}.${process.pid}.tmp`
  // Opened first: where the bundle's directory is read-only (the image), every start would otherwise make the
  // data (~10-20 ms of CPU) only to fail here.
  const fd = openSync(tmp, 'w')
  try {
    const data = script.createCachedData()
    writeFileSync(fd, Buffer.concat([Buffer.from(`${keyOf(bytes)} ${sha256(data)} ${madeBy}\n`, 'latin1'), data]))
    closeSync(fd)
    renameSync(tmp, cacheFileOf(file))
  } catch (err) {
    try { closeSync(fd) } catch { /* closed already */ }
    rmSync(tmp, { force: true })
    throw err
  }
}
