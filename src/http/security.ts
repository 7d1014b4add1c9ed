// Renamed to openapi-security.ts; re-exported while importers move.
export * from './openapi-security.js';
