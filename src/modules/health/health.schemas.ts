import { z } from 'zod';

export const HealthSchema = z
  .object({ status: z.literal('ok') })
  .meta({ example: { status: 'ok' } });

export const ReadinessSchema = z
  .object({
    status: z.literal('ready'),
    database: z.enum(['postgres', 'embedded']),
    checks: z.object({
      redis: z
        .enum(['ok', 'degraded', 'not_configured'])
        .describe(
          'The shared rate-limit store. `degraded`: Redis does not answer, so rate limits are ' +
            'not enforced; the instance still serves, so readiness does not fail.',
        ),
    }),
  })
  .meta({ example: { status: 'ready', database: 'postgres', checks: { redis: 'ok' } } });

export type Readiness = z.infer<typeof ReadinessSchema>;
