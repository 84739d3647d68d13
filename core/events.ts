/**
 * The typed hub through which state reports what changed (DESIGN.md, core/ layers): the state
 * layer emits, the layers above (notifier, watcher info, authorisation) listen. Listeners
 * subscribe when they are constructed; nothing is wired afterwards. Emission is synchronous, in
 * the order the listeners subscribed.
 *
 * The event map is a type parameter: a layer declares the events it emits (state/ declares
 * those carrying subscriptions, this file the ones that need no upper-layer type), and the
 * composition root makes one hub of their union.
 */

/** Events by name, each with its payload. */
export type EventMap = object;

/**
 * A hub of the events of `M`. A hub of more events is usable where one of fewer is asked for
 * (each layer takes the hub typed with the events it emits or hears).
 */
export interface EventHub<M extends EventMap> {
  on<K extends keyof M & string>(name: K, listener: (payload: M[K]) => void): void;
  emit<K extends keyof M & string>(name: K, payload: M[K]): void;
}

type Listener = (payload: unknown) => void;

export function createEventHub<M extends EventMap>(): EventHub<M> {
  const listeners = new Map<string, Listener[]>();
  return {
    on(name, listener) {
      const l = listeners.get(name);
      if (l) l.push(listener as Listener);
      else listeners.set(name, [listener as Listener]);
    },
    emit(name, payload) {
      const l = listeners.get(name);
      if (l) for (const fn of l) fn(payload);
    },
  };
}

/** A committed change of an XCAP document (embedded server or xcap_client). */
export interface DocumentChange {
  auid: string;
  xui: string;
  name: string;
}

/** Events that carry only base types. */
export interface BaseEvents {
  /** A presentity's state for an event changed and is committed (publication, expiry, hard state). */
  'presentity.changed': { presentityUri: string; event: string };
  /** An XCAP document changed (committed). */
  'document.changed': DocumentChange;
  /**
   * A presentity's composed body has served its NOTIFYs and must not serve another (a `dialog`
   * document showing a terminated dialog, RFC 4235): the next NOTIFY composes afresh, none is sent now.
   */
  'body.stale': { presentityUri: string; event: string };
}
