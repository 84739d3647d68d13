/**
 * The one error type SIP request handlers throw; the dispatcher turns it into a response
 * (status, reason phrase and any extra headers such as Min-Expires, Allow-Events, Accept).
 */
export class SipError extends Error {
  constructor(
    readonly status: number,
    readonly reason: string,
    readonly extraHeaders: Array<[string, string]> = [],
  ) {
    super(`${status} ${reason}`);
    this.name = 'SipError';
  }
}
