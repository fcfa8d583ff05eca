// Imported first by src/server.ts: Node's on-disk compile cache (module.enableCompileCache, Node 22.1 and later) for
// the rest of the start. A restart then reads the dependencies' compiled code instead of compiling it again (about
// 200 ms of each start on the benchmark box, docs/performance.md). The cache lives in NODE_COMPILE_CACHE when set,
// else in the system's temporary folder; where neither can be written, Node goes on without it.
import module from 'node:module'

module.enableCompileCache?.()
