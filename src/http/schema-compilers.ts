import fp from 'fastify-plugin';
import { validatorCompiler } from 'fastify-type-provider-zod';
import type { ZodType } from 'zod';
import { ValidationError } from '../errors.js';
import { findInputProblem } from '../lib/storable-input.js';
import { fieldName } from './error-handler.js';
import { serializerCompiler } from './serializer.js';

/**
 * How route schemas (zod) check requests and write responses. Every request part with a schema
 * (body, query, path) is first searched for input the service cannot store or process (NUL,
 * lone surrogates, absurd nesting, Infinity; see storable-input.ts): zod lets such input pass,
 * and the database or the serializer would then fail on it with a 500. One check here covers
 * every route, present and future. Not encapsulated: the compilers apply to every route.
 */
export const schemaCompilers = fp(
  async (app) => {
    app.setValidatorCompiler<ZodType>((route) => {
      const validate = validatorCompiler(route);
      return (data: unknown) => {
        const problem = findInputProblem(data);
        if (!problem) return validate(data);
        const field = fieldName(route.httpPart, problem.path.map((key) => `/${key}`).join(''));
        return {
          error: new ValidationError(
            [{ field, code: problem.code, message: problem.message }],
            `Invalid ${field}.`,
          ),
        };
      };
    });
    app.setSerializerCompiler(serializerCompiler);
  },
  { name: 'custodian-schema-compilers' },
);
