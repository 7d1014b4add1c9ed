import type { Kysely } from 'kysely';
import type { BreachIncidentRow, DB, ProcessorBreachIncidentRow } from '../../db/schema.js';
import { withTenant } from '../../db/tenant.js';
import { ConflictError, NotFoundError, UnprocessableError, ValidationError } from '../../errors.js';
import type { Clock } from '../../lib/clock.js';
import { findAccount } from '../accounts/accounts.service.js';
import { recordAudit } from '../audit/audit.service.js';
import { appendEvents } from '../events/events.service.js';
import type { RequestContext } from '../identity/actor.js';
import {
  findIncident,
  insertProcessorCopy,
  lockIncident,
  updateIncident,
} from './breach-incidents.repository.js';
import { feedEvent } from './breach-incidents.service.js';
import { authorityDeadline } from './deadline.js';
import {
  accountIdsAfter,
  advanceFanOut,
  existingAccountIds,
  findProcessorIncident,
  insertProcessorIncident,
  processorAccounts,
  recordPublicCommunication,
  unfinishedFanOuts,
} from './processor-incidents.repository.js';
import type { ProcessorIncidentInput } from './processor-incidents.schemas.js';

/** Accounts told within the operator's request; the rest go to the worker, this many a step. */
export const FAN_OUT_BATCH = 50;

/** Told this long ago with neither an acknowledgement nor a delivered webhook: call them. */
export const ACKNOWLEDGEMENT_WINDOW_MS = 24 * 3_600_000;

/** A time a little ahead of our clock is a clock difference, not a report from the future. */
const CLOCK_SKEW_MS = 5 * 60_000;

/**
 * Art. 33(2): the provider, as processor, tells each affected controller (account) of a breach
 * without undue delay. Each account is told in its own transaction bound to it: its own
 * incident (`source: processor`, `awareAt` the moment it was told, so its 72 hours run from
 * then), an event on its feed (and so its webhooks), an entry in its audit chain with the
 * operator as actor. Named accounts (up to a batch) are told within the operator's request,
 * the rest by the worker in resumable batches.
 */
export function createProcessorIncidentsService(deps: { db: Kysely<DB>; clock: Clock }) {
  const { db, clock } = deps;

  /** The operator's context for the worker's steps: the operator who reported the breach. */
  function workerContext(row: ProcessorBreachIncidentRow): RequestContext {
    return {
      actor: { type: 'operator', id: row.created_by, accountId: null, sessionId: '' },
      requestId: `processor-fan-out:${row.id}`,
      ip: '',
    };
  }

  /** Tells one account; false when it was told before (a resumed batch). */
  function tellAccount(
    ctx: RequestContext,
    row: ProcessorBreachIncidentRow,
    accountId: string,
  ): Promise<boolean> {
    return withTenant(accountId, () =>
      db.transaction().execute(async (trx) => {
        const now = clock.now();
        const account = await findAccount(trx, accountId);
        if (!account) return false;
        const dpo = { name: account.dpo_name, email: account.dpo_email, phone: account.dpo_phone };
        const copy = await insertProcessorCopy(trx, {
          account_id: accountId,
          source: 'processor',
          processor_incident_id: row.id,
          status: 'open',
          title: row.title,
          description: row.description,
          kinds: row.kinds,
          occurred_at: row.occurred_at,
          aware_at: now,
          authority_deadline_at: authorityDeadline(now),
          risk: 'unassessed',
          contact_point: dpo.name || dpo.email || dpo.phone ? dpo : row.contact_point,
          created_at: now,
          updated_at: now,
        });
        if (!copy) return false;
        await recordAudit(trx, ctx, {
          accountId,
          action: 'breach_incident.reported_by_processor',
          entityType: 'breach_incident',
          entityId: copy.id,
          changedFields: ['title', 'description', 'kinds', 'awareAt', 'authorityDeadlineAt'],
        });
        await appendEvents(trx, accountId, [
          feedEvent('breach_incident.reported_by_processor', copy, {
            processorIncidentId: row.id,
          }),
        ]);
        return true;
      }),
    );
  }

  /** The next targets after the cursor, in id order. */
  async function nextTargets(row: ProcessorBreachIncidentRow, limit: number): Promise<string[]> {
    if (row.target_account_ids === null) return accountIdsAfter(db, row.fan_out_after, limit);
    const after = row.fan_out_after;
    return [...row.target_account_ids]
      .sort()
      .filter((id) => after === null || id > after)
      .slice(0, limit);
  }

  /**
   * One step of a fan-out: up to `limit` accounts told, then the cursor moved past them. A
   * crash before the cursor moves repeats the step, which tells nobody twice.
   */
  async function fanOutStep(
    ctx: RequestContext,
    row: ProcessorBreachIncidentRow,
    limit: number,
  ): Promise<{ row: ProcessorBreachIncidentRow; told: number }> {
    const targets = await nextTargets(row, limit);
    let told = 0;
    for (const accountId of targets) {
      if (await tellAccount(ctx, row, accountId)) told++;
    }
    const now = clock.now();
    const next = await advanceFanOut(
      db,
      row.id,
      targets.length > 0 ? targets[targets.length - 1]! : row.fan_out_after,
      targets.length < limit ? now : null,
      now,
    );
    return { row: next, told };
  }

  async function view(row: ProcessorBreachIncidentRow) {
    return { row, accounts: await processorAccounts(db, row.id), now: clock.now() };
  }

  return {
    fanOutStep,

    async create(ctx: RequestContext, input: ProcessorIncidentInput) {
      const now = clock.now();
      const awareAt = input.awareAt ? new Date(input.awareAt) : now;
      const occurredAt = input.occurredAt ? new Date(input.occurredAt) : null;
      if (awareAt.getTime() > now.getTime() + CLOCK_SKEW_MS) {
        throw new ValidationError([
          { field: 'body.awareAt', code: 'in_future', message: 'must not be in the future' },
        ]);
      }
      if (occurredAt && occurredAt.getTime() > awareAt.getTime()) {
        throw new ValidationError([
          {
            field: 'body.occurredAt',
            code: 'occurred_after_aware',
            message: 'occurredAt must not be after awareAt',
          },
        ]);
      }
      let targets: string[] | null = null;
      if (input.accounts !== 'all') {
        targets = [...new Set(input.accounts)];
        const found = new Set(await existingAccountIds(db, targets));
        const unknown = input.accounts.flatMap((id, i) =>
          found.has(id)
            ? []
            : [
                {
                  field: `body.accounts.${i}`,
                  code: 'account_not_found',
                  message: 'no such account',
                },
              ],
        );
        if (unknown.length > 0) {
          throw new UnprocessableError('account_not_found', 'Some accounts do not exist.', unknown);
        }
      }
      let row = await db.transaction().execute((trx) =>
        insertProcessorIncident(trx, {
          title: input.title,
          description: input.description,
          kinds: [...new Set(input.kinds)],
          occurred_at: occurredAt,
          aware_at: awareAt,
          contact_point: {
            name: input.contactPoint.name ?? null,
            email: input.contactPoint.email ?? null,
            phone: input.contactPoint.phone ?? null,
          },
          target_account_ids: targets,
          created_by: ctx.actor.id,
          created_at: now,
        }),
      );
      // Named accounts: the first batch is told now, within the request.
      if (targets !== null) row = (await fanOutStep(ctx, row, FAN_OUT_BATCH)).row;
      return view(row);
    },

    async get(id: string) {
      const row = await findProcessorIncident(db, id);
      if (!row) throw new NotFoundError('The processor incident does not exist.');
      return view(row);
    },

    /** The policy's fallback: a public communication for those who could not be reached. */
    async recordPublicCommunication(id: string, input: { url: string; publishedAt: string }) {
      const now = clock.now();
      if (new Date(input.publishedAt).getTime() > now.getTime() + CLOCK_SKEW_MS) {
        throw new ValidationError([
          { field: 'body.publishedAt', code: 'in_future', message: 'must not be in the future' },
        ]);
      }
      const row = await recordPublicCommunication(
        db,
        id,
        {
          url: input.url,
          publishedAt: new Date(input.publishedAt).toISOString(),
          recordedAt: now.toISOString(),
        },
        now,
      );
      if (!row) throw new NotFoundError('The processor incident does not exist.');
      return view(row);
    },

    /**
     * The worker's sweep: unfinished fan-outs, a batch of accounts each, until `budget`
     * accounts are told or nothing is left. Returns how many were told.
     */
    async runFanOuts(budget = 500): Promise<number> {
      let told = 0;
      for (const pending of await unfinishedFanOuts(db, 10)) {
        let row = pending;
        while (row.fan_out_done_at === null && told < budget) {
          const step = await fanOutStep(workerContext(row), row, FAN_OUT_BATCH);
          row = step.row;
          told += step.told;
        }
      }
      return told;
    },

    /** The account confirms it received its processor's report (once; a repeat changes nothing). */
    async acknowledge(
      ctx: RequestContext,
      accountId: string,
      id: string,
    ): Promise<BreachIncidentRow> {
      const existing = await findIncident(db, accountId, id);
      if (!existing) throw new NotFoundError('The breach incident does not exist.');
      if (existing.source !== 'processor') {
        throw new ConflictError(
          'not_from_processor',
          'Only an incident reported by the processor is acknowledged.',
        );
      }
      if (existing.acknowledged_at) return existing;
      return db.transaction().execute(async (trx) => {
        const current = (await lockIncident(trx, accountId, id))!;
        if (current.acknowledged_at) return current;
        const now = clock.now();
        const row = await updateIncident(trx, current, { acknowledged_at: now }, now);
        await recordAudit(trx, ctx, {
          accountId,
          action: 'breach_incident.acknowledged',
          entityType: 'breach_incident',
          entityId: id,
          changedFields: ['acknowledgedAt'],
        });
        return row;
      });
    },
  };
}

export type ProcessorIncidentsService = ReturnType<typeof createProcessorIncidentsService>;
