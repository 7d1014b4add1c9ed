import type { Kysely } from 'kysely';
import type { DB } from './db/schema.js';
import type { Clock } from './lib/clock.js';
import { sendBreachDeadlineReminders } from './modules/breach-incidents/breach-incidents.service.js';
import { createProcessorIncidentsService } from './modules/breach-incidents/processor-incidents.service.js';
import { sendRequestDueReminders } from './modules/data-subject-requests/data-subject-requests.service.js';
import type { WorkerJob } from './modules/webhooks/webhook-worker.js';

/** How often the reminder sweeps look for a deadline that crossed a threshold. */
const REMINDER_SWEEP_MS = 60_000;

/** How often the processor fan-out looks for accounts still to tell (without undue delay). */
const FAN_OUT_SWEEP_MS = 5_000;

/**
 * The background jobs besides webhook deliveries, for the worker's loop (the API process on the
 * embedded engine, `npm run worker` on Postgres): the deadline reminders of breach incidents
 * (Art. 33(1)) and data-subject requests (Art. 12(3)), put on the feed once each, and the
 * fan-out of breaches at the provider to the accounts they affect (Art. 33(2)).
 */
export function backgroundJobs(deps: { db: Kysely<DB>; clock: Clock }): WorkerJob[] {
  const { db, clock } = deps;
  const processorIncidents = createProcessorIncidentsService({ db, clock });
  return [
    {
      name: 'breach-deadline-reminders',
      everyMs: REMINDER_SWEEP_MS,
      run: () => sendBreachDeadlineReminders(db, clock),
    },
    {
      name: 'request-due-reminders',
      everyMs: REMINDER_SWEEP_MS,
      run: () => sendRequestDueReminders(db, clock),
    },
    {
      name: 'processor-breach-fan-out',
      everyMs: FAN_OUT_SWEEP_MS,
      run: () => processorIncidents.runFanOuts(),
    },
  ];
}
