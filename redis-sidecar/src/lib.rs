//! registry-gate sidecar: distributes access snapshots to the Envoy filters through Redis,
//! accepts whole-snapshot publishes from the sync side, and issues Docker registry tokens.
//!
//! The crate surface is [`app`] (the HTTP router over an [`AppState`], testable without a
//! socket) and [`run`] (serve a listener until a shutdown future resolves). The snapshot
//! format is `registry_gate_core::snapshot`: one definition shared with the filter. Nothing
//! here may panic on input or on a Redis failure; every failure becomes an HTTP status in
//! `api::ApiError`.

pub mod api;
pub mod cache;
pub mod client_tls;
pub mod config;
pub mod ext_authz;
pub mod katello;
pub mod keys;
pub mod login;
pub mod metrics;
pub mod publisher;
pub mod refresh;
pub mod state;
pub mod store;
pub mod sync_job;
pub mod tls;
pub mod token;

use std::future::Future;

use axum::extract::connect_info::Connected;
use axum::serve::IncomingStream;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::tls::ClientCertificate;

pub use crate::config::{Cli, Command, Config, ConfigError, ServeArgs, SyncArgs, SyncConfig};
pub use crate::state::AppState;

/// Why the server stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    State(#[from] state::StateError),
    #[error("server failed: {0}")]
    Serve(#[from] std::io::Error),
}

/// The HTTP application over a built state.
pub fn app(state: AppState) -> Router {
    api::router(state)
}

/// Serves `listener` (over TLS only, when the configuration has TLS files) until `shutdown`
/// resolves, then stops accepting, wakes long-polls, finishes in-flight requests and stops
/// the Redis poller.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let (stop, stopped) = watch::channel(false);
    let tls = config.tls.clone();
    let state = AppState::new(config, stopped.clone())?;
    let poller = tokio::spawn(state.clone().poll_forever(stopped));
    if let Ok(address) = listener.local_addr() {
        let scheme = if tls.is_some() { "https" } else { "http" };
        tracing::info!(%address, scheme, "serving");
    }
    let shutdown = async move {
        shutdown.await;
        tracing::info!("shutting down");
        stop.send_replace(true);
    };
    let router = app(state);
    let served = match tls {
        Some(tls) => serve_on(tls.listen(listener), router, shutdown).await,
        None => serve_on(listener, router, shutdown).await,
    };
    if let Err(error) = poller.await {
        tracing::warn!(%error, "snapshot poller ended abnormally");
    }
    served.map_err(RunError::from)
}

async fn serve_on<L>(
    listener: L,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()>
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
    for<'a> ClientCertificate: Connected<IncomingStream<'a, L>>,
{
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<ClientCertificate>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}
