import type { FastifySerializerCompiler } from 'fastify';
import { ResponseSerializationError } from 'fastify-type-provider-zod';
import { z } from 'zod';

/**
 * Response serialiser for the zod route schemas: checks the payload against its schema, drops
 * members the schema does not declare, then `JSON.stringify`s it. A payload that breaks its
 * schema throws (the error handler answers 500 and shows none of it).
 *
 * fastify-type-provider-zod's own serialiser runs zod's `encode`, which bypasses the compiled
 * fast path zod uses for `parse`: about 7x slower on the `/v1/me` body (4.4 µs against 0.6 µs).
 * Response schemas hold no transforms or codecs (output types equal input types), so `parse`
 * gives the same answer.
 */
export const serializerCompiler: FastifySerializerCompiler<unknown> = ({ schema, method, url }) => {
  const zodSchema = resolve(schema);
  return (data: unknown) => {
    const result = zodSchema.safeParse(data);
    if (!result.success) {
      throw new ResponseSerializationError(method, url, { cause: result.error });
    }
    return JSON.stringify(result.data);
  };
};

function resolve(schema: unknown): z.ZodType {
  if (schema instanceof z.ZodType) return schema;
  const properties = (schema as { properties?: unknown } | null)?.properties;
  if (properties instanceof z.ZodType) return properties;
  throw new Error('a response schema is not a zod schema');
}
