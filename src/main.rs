//! The `umpire` command line: `serve`, `verify` (see CONTRACT.md for exit codes).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};

use umpire::engine::Engine;
use umpire::reference::ImageRef;
use umpire::service::{Live, credentials, load_config};
use umpire::{metrics, output, server};

#[derive(Parser)]
#[command(
    name = "umpire",
    version,
    about = "May this image be promoted, pulled, run? Verifies signatures and attestations against policy."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gRPC service (built-in default configuration without --config).
    Serve {
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Verify images in-process and print one verdict each. Exit 0: all allowed; 1: any denied for a
    /// lasting reason; 2: any could not be decided (bad config or reference, registry unreachable).
    Verify {
        #[arg(long)]
        config: Option<PathBuf>,
        /// Apply only this policy (its images globs must still match).
        #[arg(long)]
        policy: Option<String>,
        /// One JSON object per line, with the gRPC response's fields (same as --format json).
        #[arg(long)]
        json: bool,
        /// Output: text (a block per image), json (JSON lines) or table (one line per image).
        #[arg(long, value_parser = ["text", "json", "table"], default_value = "text")]
        format: String,
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// The sigstore-conformance client protocol (see ../shared/conformance/README.md).
    Conformance {
        #[command(subcommand)]
        command: ConformanceCommand,
    },
}

#[derive(Subcommand)]
enum ConformanceCommand {
    /// Verify a Sigstore bundle for an artifact (a path or sha256:<hex>). Exit 0 only if it verifies.
    VerifyBundle(umpire::conformance::VerifyBundleArgs),
}

fn init_logging(default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("UMPIRE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    // Colours only on a terminal: escape sequences in a collected log are noise at best.
    use std::io::IsTerminal as _;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("umpire: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match cli.command {
        Command::Serve { config } => {
            init_logging("info");
            match runtime.block_on(serve(config)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    eprintln!("umpire: {e:#}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Verify {
            config,
            policy,
            json,
            format,
            images,
        } => {
            init_logging("warn");
            let format = if json { "json".to_owned() } else { format };
            runtime.block_on(verify(config, policy, &format, images))
        }
        Command::Conformance {
            command: ConformanceCommand::VerifyBundle(args),
        } => match umpire::conformance::verify_bundle(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("umpire: bundle does not verify: {e:#}");
                ExitCode::from(1)
            }
        },
    }
}

async fn serve(config_path: Option<PathBuf>) -> anyhow::Result<()> {
    let cfg = load_config(config_path.as_ref())?;
    match &cfg.source {
        Some(p) => {
            tracing::info!(config = %p.display(), policies = cfg.policies.len(), "configuration loaded")
        }
        None => tracing::warn!(
            "no --config: running on the built-in default (deny all but the bundled demo)"
        ),
    }
    let (listen, metrics_listen) = (cfg.listen, cfg.metrics_listen);
    let live = Arc::new(Live::new(cfg, config_path, credentials()?)?);
    #[cfg(unix)]
    tokio::spawn(umpire::service::reload_on_sighup(Arc::clone(&live)));
    tokio::spawn(umpire::tuf::refresh_forever(Arc::clone(&live)));

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    // Every listener's task, awaited after SIGTERM so in-flight requests get their answers.
    let mut listeners = tokio::task::JoinSet::new();
    if let Some(addr) = metrics_listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr} (metrics_listen)"))?;
        let mut stop = stop_rx.clone();
        listeners.spawn(metrics::serve(
            Arc::clone(live.metrics()),
            listener,
            umpire::listener::Ceilings::from(&live.engine().config().limits),
            async move {
                let _ = stop.changed().await;
            },
        ));
    }
    let (grpc_tls, webhook, ext_authz) = {
        let engine = live.engine();
        let c = engine.config();
        (c.grpc_tls.clone(), c.webhook.clone(), c.ext_authz.clone())
    };
    if let Some(w) = webhook {
        let listener = tokio::net::TcpListener::bind(w.listen)
            .await
            .with_context(|| format!("cannot listen on {} (webhook.listen)", w.listen))?;
        let mut stop = stop_rx.clone();
        let live = Arc::clone(&live);
        listeners.spawn(async move {
            let stopped = async move {
                let _ = stop.changed().await;
            };
            if let Err(e) = umpire::webhook::serve(live, w, listener, stopped).await {
                tracing::error!("webhook listener stopped: {e:#}");
            }
            Ok(())
        });
    }
    if let Some(x) = ext_authz {
        let listener = tokio::net::TcpListener::bind(x.listen)
            .await
            .with_context(|| format!("cannot listen on {} (ext_authz_listen)", x.listen))?;
        let mut stop = stop_rx.clone();
        let live = Arc::clone(&live);
        listeners.spawn(async move {
            let stopped = async move {
                let _ = stop.changed().await;
            };
            if let Err(e) = server::serve_ext_authz_on(live, listener, stopped).await {
                tracing::error!("ext_authz listener stopped: {e:#}");
            }
            Ok(())
        });
    }
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    // SIGTERM stops the gRPC listener (tonic finishes in-flight calls), then the others, each
    // of which answers what it has in flight before its task ends.
    let result = match grpc_tls {
        Some(tls) => server::serve_tls_on(live, listener, tls, server::shutdown_signal()).await,
        None => server::serve_on(live, listener, server::shutdown_signal()).await,
    };
    let _ = stop_tx.send(true);
    while let Some(done) = listeners.join_next().await {
        if let Ok(Err(e)) = done {
            tracing::error!("listener stopped: {e:#}");
        }
    }
    tracing::info!("every listener drained");
    result
}

async fn verify(
    config: Option<PathBuf>,
    policy: Option<String>,
    format: &str,
    images: Vec<String>,
) -> ExitCode {
    let setup = || -> anyhow::Result<Arc<Engine>> {
        Engine::standalone(load_config(config.as_ref())?, credentials()?)
    };
    let engine = match setup() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("umpire: {e:#}");
            return ExitCode::from(2);
        }
    };
    let mut undecided = false;
    let mut denied = false;
    let mut requests = Vec::new();
    for image in &images {
        match ImageRef::parse(image) {
            Ok(_) => requests.push((image.clone(), policy.clone())),
            Err(e) => {
                eprintln!("umpire: {e}");
                undecided = true;
            }
        }
    }
    match engine.verify_batch(&requests).await {
        Ok(verdicts) => {
            if format == "table" {
                println!("{}", output::table(&verdicts));
            }
            for v in &verdicts {
                match format {
                    "json" => println!("{}", output::json_line(v)),
                    "table" => {}
                    _ => println!("{}", output::human(v)),
                }
                if !v.allowed {
                    if v.retryable {
                        undecided = true;
                    } else {
                        denied = true;
                    }
                }
            }
        }
        Err(e) => {
            eprintln!("umpire: {e}");
            undecided = true;
        }
    }
    if denied {
        ExitCode::from(1)
    } else if undecided {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    }
}
