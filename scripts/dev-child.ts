// Preloaded into the service `npm run dev` starts (scripts/dev.ts): when the dev loop goes away without stopping it
// (killed, its terminal closed), the service stops as after a SIGTERM instead of holding the port as an orphan.
process.channel?.unref()
process.once('disconnect', () => { process.kill(process.pid, 'SIGTERM') })
