/** Every contract between Porthole's parts: one schema each, used as a type and as a validator. */
export * from './common.js'
export * from './power.js'
export * from './console.js'
export * from './server.js'
export * from './job.js'
export * from './event.js'
export { compile, type Checker } from './validate.js'
