//! Serving a fake: bind 127.0.0.1 (port 0: the OS picks), learn the base URL the router may need,
//! then serve in a task that stops when the [`Serving`] handle drops. One copy for every fake.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// A bound listener and its `http://127.0.0.1:PORT` base URL, not serving yet.
pub struct Bound {
    listener: TcpListener,
    pub base_url: String,
}

/// Binds 127.0.0.1 on `port` (0: OS-picked).
pub async fn bind(port: u16) -> anyhow::Result<Bound> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let listener = TcpListener::bind(addr).await.with_context(|| format!("binding {addr}"))?;
    let local = listener.local_addr().context("reading the bound address")?;
    Ok(Bound { listener, base_url: format!("http://{local}") })
}

impl Bound {
    /// Serves `app` until the returned handle drops; `name` labels a server error in the log.
    pub fn serve(self, name: &'static str, app: Router) -> Serving {
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(self.listener, app).await {
                tracing::error!(error = %e, fake = name, "fake server stopped");
            }
        });
        Serving { task }
    }
}

/// A serving fake; the server stops when this is dropped.
pub struct Serving {
    task: JoinHandle<()>,
}

impl Drop for Serving {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A running fake: its base URL and state; the server stops when this is dropped. Each fake names
/// it `RunningFake` (`Running<ItsState>`) and adds the URLs of its own endpoints.
pub struct Running<S> {
    pub(crate) base_url: String,
    pub(crate) state: Arc<S>,
    _server: Serving,
}

impl<S> Running<S> {
    pub(crate) fn new(base_url: String, state: Arc<S>, server: Serving) -> Self {
        Self { base_url, state, _server: server }
    }

    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub fn base_url(&self) -> String {
        self.base_url.clone()
    }

    /// The state handle, for direct admin from Rust.
    pub fn state(&self) -> Arc<S> {
        self.state.clone()
    }
}
