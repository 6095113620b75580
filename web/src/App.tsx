//! The dashboard's frame: header, navigation, the signed-out screen and the six screens.
import { useEffect, useState } from "react";
import type { Session } from "./auth";
import { Link, match, navigate, useLocation } from "./router";
import { Connections } from "./screens/Connections";
import { ConnectionDetail } from "./screens/ConnectionDetail";
import { PushQueue } from "./screens/PushQueue";
import { Conflicts } from "./screens/Conflicts";
import { Audit } from "./screens/Audit";
import { Tasks } from "./screens/Tasks";

const NAV = [
  { href: "/connections", label: "Connections" },
  { href: "/queue", label: "Approval queue" },
  { href: "/conflicts", label: "Conflicts" },
  { href: "/tasks", label: "Tasks" },
  { href: "/audit", label: "Audit log" },
];

/** Dispatched on `window` when the API answers 401 in dev mode. */
export const SIGNED_OUT_EVENT = "syncbridge:signed-out";

export function App({ session }: { session: Session }) {
  const [signedOut, setSignedOut] = useState(session.kind === "signed-out");
  useEffect(() => {
    const onSignedOut = () => setSignedOut(true);
    window.addEventListener(SIGNED_OUT_EVENT, onSignedOut);
    return () => window.removeEventListener(SIGNED_OUT_EVENT, onSignedOut);
  }, []);

  if (session.kind === "error") {
    return (
      <main className="page narrow">
        <h1>Sign-in failed</h1>
        <p role="alert">{session.message}</p>
        <p>
          <a href="/">Try again</a>
        </p>
      </main>
    );
  }
  if (signedOut) return <SignedOut />;
  return <Frame />;
}

function SignedOut() {
  return (
    <main className="page narrow">
      <h1>Signed out</h1>
      <p>
        Open the link from <code>syncbridge dashboard</code> again (it prints
        <code>http://127.0.0.1:PORT/#token=…</code>).
      </p>
    </main>
  );
}

function Frame() {
  const url = useLocation();
  const path = url.pathname;
  useEffect(() => {
    if (path === "/" || path === "") navigate("/connections" + url.search, true);
  }, [path, url.search]);

  let screen;
  let detail: Record<string, string> | null;
  if ((detail = match("/connections/:id", path))) screen = <ConnectionDetail id={detail.id ?? ""} />;
  else if (path === "/connections") screen = <Connections />;
  else if (path === "/queue") screen = <PushQueue />;
  else if (path === "/conflicts") screen = <Conflicts />;
  else if (path === "/tasks") screen = <Tasks />;
  else if (path === "/audit") screen = <Audit />;
  else if (path === "/" || path === "") screen = null;
  else
    screen = (
      <section>
        <h1>Not found</h1>
        <p>
          There is no page at <code>{path}</code>. <Link href="/connections">Go to the connections</Link>.
        </p>
      </section>
    );

  return (
    <>
      <a className="skip" href="#main">
        Skip to content
      </a>
      <header className="top">
        <span className="brand">Syncbridge</span>
        <nav aria-label="Main">
          <ul>
            {NAV.map((n) => {
              const current = path === n.href || path.startsWith(n.href + "/");
              return (
                <li key={n.href}>
                  <Link href={n.href} aria-current={current ? "page" : undefined}>
                    {n.label}
                  </Link>
                </li>
              );
            })}
          </ul>
        </nav>
      </header>
      <main id="main" className="page" tabIndex={-1}>
        {screen}
      </main>
    </>
  );
}
