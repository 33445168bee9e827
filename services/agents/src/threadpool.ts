/**
 * Imported first by main.ts, before anything can use libuv's thread pool. @unraid/libvirt runs each call as
 * an AsyncWorker on that pool (4 threads by default); a call to a libvirt host that went silent holds its
 * thread until TCP gives up, long after the job's deadline has ended the job. A larger pool keeps a few
 * dead hosts from stalling every other job (and the process's file and DNS work). An explicit
 * UV_THREADPOOL_SIZE in the environment wins.
 */
process.env.UV_THREADPOOL_SIZE ??= '64'
