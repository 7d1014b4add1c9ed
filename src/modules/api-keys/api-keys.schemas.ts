import { z } from 'zod';
import type { ApiKeyRow } from '../../db/schema.js';
import { Id, Timestamp, toIso } from '../../http/schemas.js';
import { API_KEY_SCOPES } from '../identity/actor.js';

export const ApiKeySchema = z
  .object({
    id: Id,
    name: z.string(),
    prefix: z.string().describe('Public part of the key (`cst_<prefix>_…`), to recognise it.'),
    scopes: z.array(z.enum(API_KEY_SCOPES)),
    createdAt: Timestamp,
    expiresAt: Timestamp.nullable(),
    lastUsedAt: Timestamp.nullable().describe('Updated at most once a minute.'),
    revokedAt: Timestamp.nullable(),
  })
  .meta({
    id: 'ApiKey',
    example: {
      id: '2f1e0d9c-8b7a-4654-9321-0fedcba98765',
      name: 'CRM sync',
      prefix: '3f9a1c0b7d2e4a56',
      scopes: ['contacts:read', 'contacts:write'],
      createdAt: '2026-11-25T14:00:00.000Z',
      expiresAt: null,
      lastUsedAt: null,
      revokedAt: null,
    },
  });

export const CreatedApiKeySchema = ApiKeySchema.extend({
  key: z.string().describe('The full key. Shown only in this response: store it now.'),
}).meta({ id: 'CreatedApiKey' });

export const CreateApiKeyBody = z
  .object({
    name: z.string().trim().min(1).max(100),
    scopes: z.array(z.enum(API_KEY_SCOPES)).min(1),
    expiresAt: Timestamp.optional().refine((v) => v === undefined || new Date(v) > new Date(), {
      message: 'must be in the future',
    }),
  })
  .meta({ example: { name: 'CRM sync', scopes: ['contacts:read', 'contacts:write'] } });

export function toApiKey(row: ApiKeyRow) {
  return {
    id: row.id,
    name: row.name,
    prefix: row.prefix,
    scopes: row.scopes as (typeof API_KEY_SCOPES)[number][],
    createdAt: toIso(row.created_at),
    expiresAt: toIso(row.expires_at),
    lastUsedAt: toIso(row.last_used_at),
    revokedAt: toIso(row.revoked_at),
  };
}
