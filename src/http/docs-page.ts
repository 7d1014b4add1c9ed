/**
 * What makes /docs (Swagger UI) ours and safe to open anywhere: its Content-Security-Policy,
 * computed per request, and the Custodian logo and favicon in place of the Fastify ones.
 */

/**
 * The docs page's policy. Swagger UI's scripts and styles are served from /docs/static, so
 * `'self'` covers them; nothing inline runs (see docs-theme.css for the one inline style
 * Swagger UI's layout used to need). `connect-src` adds the API's public origin when it differs
 * from the page's, so "Try it out" can call it.
 *
 * `upgrade-insecure-requests` is sent only when this request arrived over HTTPS (TLS served here,
 * or a trusted proxy's `X-Forwarded-Proto`): on a plain-HTTP page it makes the browser fetch
 * every asset over HTTPS, which fails on a host without TLS and leaves the page blank.
 */
export function docsContentSecurityPolicy(options: {
  https: boolean;
  apiOrigin?: string | undefined;
}): string {
  const connect = ["'self'"];
  if (options.apiOrigin) connect.push(options.apiOrigin);
  const directives = [
    "default-src 'self'",
    "base-uri 'self'",
    `connect-src ${connect.join(' ')}`,
    "font-src 'self' data:",
    "form-action 'self'",
    "frame-ancestors 'none'",
    "img-src 'self' data:",
    "object-src 'none'",
    "script-src 'self'",
    "script-src-attr 'none'",
    "style-src 'self'",
  ];
  if (options.https) directives.push('upgrade-insecure-requests');
  return directives.join('; ');
}

/** The API origin a page on another origin must be allowed to call, from PUBLIC_BASE_URL. */
export function apiOriginOf(publicBaseUrl: string | undefined): string | undefined {
  return publicBaseUrl ? new URL(publicBaseUrl).origin : undefined;
}

/**
 * Swagger UI without its top bar (logo and "Explore" box for loading other documents): the
 * page shows our document only, and our header comes from {@link DOCS_THEME_CSS}.
 */
export const DOCS_UI_CONFIG = { layout: 'BaseLayout' } as const;

/** The logo: the product's name beside a shield, white, for a dark header bar. */
export const DOCS_LOGO_SVG = `<svg xmlns="http://www.w3.org/2000/svg" width="220" height="40" viewBox="0 0 220 40" role="img" aria-label="Custodian">
<path d="M20 3 L35 9 V19 C35 28 28 34 20 37 C12 34 5 28 5 19 V9 Z" fill="#2f7d5b" stroke="#ffffff" stroke-width="2"/>
<path d="M13 20 L18 25 L28 14" fill="none" stroke="#ffffff" stroke-width="3" stroke-linecap="round" stroke-linejoin="round"/>
<text x="46" y="28" font-family="Helvetica, Arial, sans-serif" font-size="24" font-weight="700" fill="#ffffff">Custodian</text>
</svg>`;

/** The favicon: the shield alone. */
export const DOCS_FAVICON_SVG = `<svg xmlns="http://www.w3.org/2000/svg" width="32" height="32" viewBox="0 0 40 40">
<path d="M20 3 L35 9 V19 C35 28 28 34 20 37 C12 34 5 28 5 19 V9 Z" fill="#2f7d5b"/>
<path d="M13 20 L18 25 L28 14" fill="none" stroke="#ffffff" stroke-width="3" stroke-linecap="round" stroke-linejoin="round"/>
</svg>`;

/**
 * The page's header bar, drawn by CSS alone (no script, no inline style): the logo is a
 * background image from a data: URL, which `img-src data:` allows.
 */
export const DOCS_THEME_CSS = `#swagger-ui::before {
  content: "";
  display: block;
  height: 56px;
  background: #1f2a24 url("data:image/svg+xml;base64,${Buffer.from(DOCS_LOGO_SVG).toString('base64')}") no-repeat 20px center / auto 40px;
}
`;
