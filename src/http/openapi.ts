import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { FastifySchema } from 'fastify';
import fp from 'fastify-plugin';
import { jsonSchemaTransform, jsonSchemaTransformObject } from 'fastify-type-provider-zod';
import {
  apiOriginOf,
  DOCS_FAVICON_SVG,
  DOCS_LOGO_SVG,
  DOCS_THEME_CSS,
  DOCS_UI_CONFIG,
  docsContentSecurityPolicy,
} from './docs-page.js';
import { ANSWERS_KEY, finishResponses } from './openapi-responses.js';
import { ProblemSchema } from './problem.js';

export const API_VERSION = '1.0.0';

export interface OpenApiOptions {
  /** The API's public URL, when configured: the document's one server. */
  publicBaseUrl: string | undefined;
}

/**
 * The OpenAPI 3.1 document, built from the route schemas: served at /openapi.json and rendered
 * at /docs. Not encapsulated, so the generator sees every route registered after it.
 */
export const openApi = fp<OpenApiOptions>(
  async (app, { publicBaseUrl }) => {
    await app.register(swagger, {
      openapi: {
        openapi: '3.1.0',
        info: {
          title: 'Custodian API',
          version: API_VERSION,
          description:
            'GDPR back end of an EU email-marketing provider: consent, data-subject requests, ' +
            'breach incidents and a tamper-evident audit trail. Errors are RFC 9457 ' +
            '`application/problem+json` documents with a stable `code`.',
          license: { name: 'Proprietary', identifier: 'LicenseRef-Proprietary' },
          contact: { name: 'Custodian operations', email: 'ops@example.com' },
        },
        // Without a public URL, a relative server: /docs then calls whatever host served it
        // (also behind a proxy), and the committed openapi.yaml does not depend on a local PORT.
        servers: [{ url: publicBaseUrl ?? '/' }],
        tags: [
          { name: 'meta', description: 'The API itself.' },
          { name: 'operations', description: 'Health, readiness and metrics for operators.' },
          { name: 'auth', description: 'Sign-up, login, token refresh, password change.' },
          { name: 'account', description: 'Your account: time zone, DPO contact.' },
          { name: 'users', description: 'The people of your account and their roles.' },
          { name: 'api-keys', description: 'Scoped keys for your systems.' },
          { name: 'audit', description: 'The tamper-evident audit trail (Art. 5(2), 24).' },
          {
            name: 'contacts',
            description: 'Subscribers: retrieve, rectify, restrict, erase, export.',
          },
          { name: 'suppressions', description: 'Keyed hashes of erased addresses (Art. 17).' },
          { name: 'purposes', description: 'Processing purposes and their versioned notices.' },
          { name: 'consents', description: 'The append-only consent ledger (Art. 7).' },
          {
            name: 'data-subject-requests',
            description:
              'Requests under Art. 15–18, 20, 21: deadlines (Art. 12(3)), decisions, actions.',
          },
          {
            name: 'breach-incidents',
            description:
              'Personal-data breaches (Art. 33): the 72-hour deadline, the assessment, the ' +
              'phased notification to the authority, the register (Art. 33(5)).',
          },
          {
            name: 'contact-imports',
            description: 'Bulk imports of contacts with consent evidence.',
          },
          {
            name: 'events',
            description:
              'The outbox feed your systems act on: double opt-in requests, withdrawals.',
          },
          {
            name: 'webhooks',
            description:
              'The feed pushed to your endpoints, signed (Standard Webhooks) and retried; ' +
              'users only, never API keys.',
          },
          { name: 'public', description: 'Links followed by data subjects, without an account.' },
          { name: 'ops', description: 'The provider’s operations staff.' },
        ],
        components: {
          securitySchemes: {
            bearerAuth: {
              type: 'http',
              scheme: 'bearer',
              bearerFormat: 'JWT',
              description: 'A user access token from `POST /v1/auth/login`.',
            },
            apiKeyAuth: {
              type: 'apiKey',
              in: 'header',
              name: 'X-API-Key',
              description: 'A scoped API key for integrations, from `POST /v1/api-keys`.',
            },
          },
        },
      },
      // A route's `answers` (descriptions and headers of its success answers) travel to the
      // finished operation under an extension key, where finishResponses applies them.
      // A streamed body (read by its handler, not validated by the route) is documented as the
      // request body with one entry per media type.
      transform: (input) => {
        const result = jsonSchemaTransform(input);
        const { answers, streamedBody, ...schema } = (result.schema ?? {}) as FastifySchema;
        if (answers) Object.assign(schema, { [ANSWERS_KEY]: answers });
        if (streamedBody) {
          const content = Object.entries(streamedBody).map(([mediaType, body]) => [
            mediaType,
            { schema: jsonSchemaTransform({ ...input, schema: { body } }).schema.body },
          ]);
          schema.body = { content: Object.fromEntries(content) };
        }
        return { ...result, schema };
      },
      // The zod provider emits every registered schema twice (`X` for responses, `XInput` for
      // requests), used or not: keep only what the paths reference, so clients get no dead
      // types.
      transformObject: (document) =>
        withoutUnusedSchemas(finishResponses(jsonSchemaTransformObject(document))),
    });
    // In a context of its own, so the policy hook below covers /docs and its static files and
    // nothing else. It runs after the global headers hook and replaces the API's `default-src
    // 'none'`, which would blank the page.
    const apiOrigin = apiOriginOf(publicBaseUrl);
    await app.register(async (docs) => {
      docs.addHook('onRequest', (request, reply, done) => {
        reply.header(
          'content-security-policy',
          docsContentSecurityPolicy({ https: request.protocol === 'https', apiOrigin }),
        );
        done();
      });
      await docs.register(swaggerUi, {
        routePrefix: '/docs',
        uiConfig: DOCS_UI_CONFIG,
        // Not shown (the layout has no top bar), but given so no other product's logo ships.
        logo: { type: 'image/svg+xml', content: Buffer.from(DOCS_LOGO_SVG) },
        theme: {
          title: 'Custodian API',
          css: [{ filename: 'custodian.css', content: DOCS_THEME_CSS }],
          favicon: [
            {
              filename: 'favicon.svg',
              rel: 'icon',
              sizes: 'any',
              type: 'image/svg+xml',
              content: Buffer.from(DOCS_FAVICON_SVG),
            },
          ],
        },
      });
    });

    // Referenced so the component is always present, even before any route uses it.
    void ProblemSchema;

    app.get('/openapi.json', { schema: { hide: true }, config: { rateLimit: false } }, async () =>
      app.swagger(),
    );
  },
  { name: 'custodian-openapi' },
);

const SCHEMA_REF = '#/components/schemas/';
type OpenApiDocument = ReturnType<typeof jsonSchemaTransformObject>;

/**
 * Drops the component schemas that nothing outside `components.schemas` reaches through `$ref`
 * (directly, or through another schema that is reached), gives a request-only schema its own
 * name (not the provider's `XInput`), and lists the rest by name: the zod
 * provider emits them in the order their modules were first imported, which would reorder the
 * contract whenever the code moves between files.
 */
function withoutUnusedSchemas(document: OpenApiDocument): OpenApiDocument {
  const { components } = document as { components?: { schemas?: Record<string, unknown> } };
  const schemas = components?.schemas;
  if (!schemas) return document;
  const used = new Set<string>();
  const pending: unknown[] = [{ ...document, components: { ...components, schemas: {} } }];
  while (pending.length > 0) {
    const node = pending.pop();
    if (node === null || typeof node !== 'object') continue;
    for (const [key, value] of Object.entries(node)) {
      if (key === '$ref' && typeof value === 'string' && value.startsWith(SCHEMA_REF)) {
        const name = value.slice(SCHEMA_REF.length);
        if (!used.has(name)) {
          used.add(name);
          pending.push(schemas[name]);
        }
      } else {
        pending.push(value);
      }
    }
  }
  // A schema used by requests only is emitted as `XInput`: it keeps its own name `X`.
  const renames = new Map<string, string>();
  for (const name of used) {
    const base = name.endsWith('Input') ? name.slice(0, -'Input'.length) : undefined;
    if (base && !used.has(base)) renames.set(name, base);
  }
  const kept = Object.fromEntries(
    Object.entries(schemas)
      .filter(([name]) => used.has(name))
      .map(([name, schema]) => [renames.get(name) ?? name, schema] as const)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)),
  );
  const result = { ...document, components: { ...components, schemas: kept } };
  if (renames.size === 0) return result as OpenApiDocument;
  return JSON.parse(JSON.stringify(result), (key, value) =>
    key === '$ref' && typeof value === 'string' && value.startsWith(SCHEMA_REF)
      ? SCHEMA_REF + (renames.get(value.slice(SCHEMA_REF.length)) ?? value.slice(SCHEMA_REF.length))
      : value,
  ) as OpenApiDocument;
}
