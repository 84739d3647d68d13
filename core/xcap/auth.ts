/**
 * The XCAP server's HTTP Digest authentication (xcap_auth): the admin port uses the same code,
 * so it lives in core/http-auth.ts.
 */
export { DigestAuth, parseDigestHeader, type DigestResult } from '../http-auth.js';
