/**
 * Typed domain errors. Services throw these; the one error handler in `src/http/error-handler.ts`
 * renders them as RFC 9457 problem+json. Each carries a stable machine-readable `code`.
 */

export interface FieldError {
  /** Where the problem is, e.g. `body.email` or `query.limit`. */
  field: string;
  message: string;
  code: string;
}

export class AppError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    readonly title: string,
    detail?: string,
    readonly errors?: FieldError[],
    readonly headers?: Record<string, string>,
  ) {
    super(detail ?? title);
    this.name = new.target.name;
  }
}

export class ValidationError extends AppError {
  constructor(errors: FieldError[], detail = 'The request has invalid fields.') {
    super(400, 'validation_failed', 'Validation failed', detail, errors);
  }
}

export class BadRequestError extends AppError {
  constructor(code: string, detail: string) {
    super(400, code, 'Bad request', detail);
  }
}

export class UnauthorizedError extends AppError {
  constructor(detail = 'Authentication is required.', code = 'unauthorized') {
    super(401, code, 'Unauthorized', detail, undefined, { 'www-authenticate': 'Bearer' });
  }
}

export class ForbiddenError extends AppError {
  constructor(detail = 'You are not allowed to do this.', code = 'forbidden') {
    super(403, code, 'Forbidden', detail);
  }
}

export class NotFoundError extends AppError {
  constructor(detail = 'The resource does not exist.', code = 'not_found') {
    super(404, code, 'Not found', detail);
  }
}

export class ConflictError extends AppError {
  constructor(code: string, detail: string) {
    super(409, code, 'Conflict', detail);
  }
}

export class PreconditionFailedError extends AppError {
  constructor(detail = 'The resource changed since you read it (If-Match does not match).') {
    super(412, 'precondition_failed', 'Precondition failed', detail);
  }
}

export class UnprocessableError extends AppError {
  constructor(code: string, detail: string, errors?: FieldError[]) {
    super(422, code, 'Unprocessable content', detail, errors);
  }
}

export class ServiceUnavailableError extends AppError {
  constructor(detail = 'The service is temporarily unavailable.', code = 'unavailable') {
    super(503, code, 'Service unavailable', detail, undefined, { 'retry-after': '5' });
  }
}

/** The database schema is older than this code: the operator must run the migrations. */
export class MigrationsPendingError extends ServiceUnavailableError {
  constructor(pending: readonly string[]) {
    const noun = pending.length === 1 ? 'migration' : 'migrations';
    super(
      `The database schema is ${pending.length} ${noun} behind this version of the service ` +
        `(newest pending: ${pending.at(-1)}); the operator must run \`npm run migrate\`.`,
      'migrations_pending',
    );
  }
}
