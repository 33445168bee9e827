/** The commands, in the order `porthole help` lists them: each one request (or a job started and waited for), printed as a table or as JSON. */
import { ADMIN_COMMANDS } from './commands/admin.js'
import { JOB_COMMANDS } from './commands/jobs.js'
import { SERVER_COMMANDS } from './commands/servers.js'
import type { Command } from './run.js'

export type { Command, Run } from './run.js'

export const COMMANDS: Record<string, Command> = { ...SERVER_COMMANDS, ...JOB_COMMANDS, ...ADMIN_COMMANDS }
