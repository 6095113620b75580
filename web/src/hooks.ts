//! Data hooks: `usePoll` loads now and again every few seconds while the page is visible, so
//! every screen stays fresh without a reload.
import { useCallback, useEffect, useRef, useState } from "react";

export const POLL_MS = 5000;

export interface Polled<T> {
  data: T | undefined;
  error: unknown;
  loading: boolean;
  reload: () => Promise<void>;
}

interface State<T> {
  key: string;
  data: T | undefined;
  error: unknown;
  done: boolean;
}

/** Loads with `load` whenever `deps` change and every `intervalMs` while the page is visible.
 * Data from other deps is never shown; a failed refresh keeps the last data and sets `error`. */
export function usePoll<T>(load: () => Promise<T>, deps: unknown[], intervalMs = POLL_MS): Polled<T> {
  const key = JSON.stringify(deps);
  const [state, setState] = useState<State<T>>({ key: "", data: undefined, error: undefined, done: false });
  const loader = useRef(load);
  const current = useRef(key);
  useEffect(() => {
    loader.current = load;
    current.current = key;
  });

  const reload = useCallback(async () => {
    const mine = current.current;
    try {
      const data = await loader.current();
      if (mine === current.current) setState({ key: mine, data, error: undefined, done: true });
    } catch (error) {
      if (mine === current.current)
        setState((s) => ({ key: mine, data: s.key === mine ? s.data : undefined, error, done: true }));
    }
  }, []);

  useEffect(() => {
    current.current = key;
    void reload();
    const timer = window.setInterval(() => {
      if (document.visibilityState === "visible") void reload();
    }, intervalMs);
    const onVisible = () => {
      if (document.visibilityState === "visible") void reload();
    };
    document.addEventListener("visibilitychange", onVisible);
    return () => {
      window.clearInterval(timer);
      document.removeEventListener("visibilitychange", onVisible);
    };
  }, [reload, intervalMs, key]);

  const mine = state.key === key;
  return { data: mine ? state.data : undefined, error: mine ? state.error : undefined, loading: !mine || !state.done, reload };
}
