//! The `registry-gate-sidecar` binary: parses the command line, sets up structured logging
//! and runs a subcommand. It must never hold logic of its own beyond exit codes: 2 for a bad
//! configuration (every problem listed), 1 for a runtime failure; `sync` has its own
//! (`sync_job::JobError::exit_code`).

use std::process::ExitCode;

use clap::Parser;
use registry_gate_sidecar::config::LogFormat;
use registry_gate_sidecar::sync_job::{self, EXIT_OK, EXIT_SOURCE};
use registry_gate_sidecar::{keys, run, Cli, Command, Config, SyncConfig};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Keygen(args) => match keys::write_new_key(&args.out, args.algorithm) {
            Ok(key) => {
                println!(
                    "wrote {} ({} key, kid {})",
                    args.out.display(),
                    key.algorithm().jose().name(),
                    key.kid()
                );
                if let Some(publisher) = key.publisher() {
                    // What a filter's (or ext_authz check's) `publisher_keys` lists when this
                    // key is a sidecar's --publisher-key.
                    println!("publisher key: {}", publisher.public());
                }
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("keygen: {error}");
                ExitCode::FAILURE
            }
        },
        Command::Serve(args) => {
            let config = match Config::from_args(&args) {
                Ok(config) => config,
                Err(error) => {
                    eprintln!("registry-gate-sidecar: {error}");
                    return ExitCode::from(2);
                }
            };
            init_logging(config.log_format);
            serve(config)
        }
        Command::Sync(args) => match SyncConfig::from_args(&args) {
            Ok(config) => sync(&config),
            Err(error) => {
                eprintln!("registry-gate-sidecar sync: {error}");
                ExitCode::from(EXIT_SOURCE)
            }
        },
    }
}

/// One sync: the dry run's diff and the summary line on stdout, problems on stderr.
fn sync(config: &SyncConfig) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("registry-gate-sidecar sync: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let report = runtime.block_on(sync_job::run(config));
    if let Some(diff) = &report.diff {
        print!("{diff}");
    }
    if let Some(summary) = &report.summary {
        println!("{summary}");
    }
    match report.result {
        Ok(()) => ExitCode::from(EXIT_OK),
        Err(error) => {
            eprintln!("registry-gate-sidecar sync: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
    }
}

fn serve(config: Config) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("registry-gate-sidecar: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(config.listen).await {
            Ok(listener) => listener,
            Err(error) => {
                tracing::error!(listen = %config.listen, %error, "cannot listen");
                return ExitCode::FAILURE;
            }
        };
        match run(listener, config, shutdown_signal()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                tracing::error!(%error, "stopped with an error");
                ExitCode::FAILURE
            }
        }
    })
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let terminate = async {
        match signal(SignalKind::terminate()) {
            Ok(mut stream) => {
                stream.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot watch SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = terminate => tracing::info!("SIGTERM received"),
        result = tokio::signal::ctrl_c() => match result {
            Ok(()) => tracing::info!("SIGINT received"),
            Err(error) => {
                tracing::error!(%error, "cannot watch SIGINT");
                std::future::pending::<()>().await;
            }
        },
    }
}
