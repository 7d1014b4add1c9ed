/** OpenAPI security requirements, by who may call. */
type SecurityRequirement = Record<string, string[]>;

export const BEARER: SecurityRequirement[] = [{ bearerAuth: [] }];
export const BEARER_OR_API_KEY: SecurityRequirement[] = [{ bearerAuth: [] }, { apiKeyAuth: [] }];
/** Anyone may call (probes, sign-up, login, refresh, data subjects' links). */
export const PUBLIC: SecurityRequirement[] = [];
