#!/usr/bin/env node
// The `porthole` command: runs the compiled CLI (`npm run build`), so that `npx porthole` works from the repository.
let cli
try {
  cli = await import('../dist/src/main.js')
} catch (err) {
  if (err?.code !== 'ERR_MODULE_NOT_FOUND') throw err
  process.stderr.write('porthole: the CLI is not built yet: run `npm run build` in the repository first\n')
  process.exit(1)
}
process.exitCode = await cli.main(process.argv.slice(2))
