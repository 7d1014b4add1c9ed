import type { FastifyReply, FastifyRequest } from 'fastify';
import { PreconditionFailedError } from '../errors.js';

/** Optimistic concurrency: `ETag` on reads, `If-Match` on updates (412 on a stale version). */
export function etagFor(version: number): string {
  return `"v${version}"`;
}

export function setEtag(reply: FastifyReply, version: number): void {
  reply.header('etag', etagFor(version));
}

/**
 * The version the caller expects from `If-Match`, or undefined when absent (the update then
 * applies unconditionally). `*` means any version.
 */
export function expectedVersion(request: FastifyRequest): number | undefined {
  const header = request.headers['if-match'];
  if (header === undefined || header.trim() === '*') return undefined;
  const match = /^(?:W\/)?"v(\d+)"$/.exec(header.trim());
  if (!match) throw new PreconditionFailedError('If-Match must be an ETag this API issued.');
  return Number(match[1]);
}
