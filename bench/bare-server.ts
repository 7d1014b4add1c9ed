import Fastify from 'fastify';

/**
 * The reference point of the benchmark: Fastify with no plugin, no hook and no logging,
 * answering the same trivial route as the service. The service is reported as a fraction of it.
 */
const app = Fastify({ logger: false });

app.get('/healthz', async () => ({ status: 'ok' }));

// Exit cleanly on SIGTERM so that `--cpu-prof` gets to write its profile.
for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.once(signal, () => {
    void app.close().finally(() => process.exit(0));
  });
}

await app.listen({ host: process.env.HOST ?? '127.0.0.1', port: Number(process.env.PORT ?? 0) });
