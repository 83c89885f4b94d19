//! The `umpire` command line: `serve`, `verify` (see CONTRACT.md for exit codes).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};

use umpire::api::{output, server};
use umpire::engine::Engine;
use umpire::reference::ImageRef;
use umpire::service::{Live, credentials, load_config};

/// mimalloc rather than glibc's malloc: see Cargo.toml and BENCHMARKS.md (cold path).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
        #[command(flatten)]
        cosign: umpire::cli::CosignFlags,
        /// The Kubernetes namespace asking (policies scoped by `namespaces` apply).
        #[arg(long)]
        namespace: Option<String>,
        /// Print what admission would answer for an AdmissionReview (JSON or YAML) in FILE, with
        /// the webhook's own image extraction and exemptions.
        #[arg(long, value_name = "FILE", conflicts_with = "manifests")]
        admission_review: Option<PathBuf>,
        /// ... or for the Pods and workloads of these manifests (several documents allowed),
        /// as CREATE requests in their namespaces (or --namespace, or `default`).
        #[arg(short = 'f', long = "filename", value_name = "FILE")]
        manifests: Option<PathBuf>,
        #[arg(required_unless_present_any = ["admission_review", "manifests"])]
        images: Vec<String>,
    },
    /// Configuration tools.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// The sigstore-conformance client protocol (`verify-bundle`, as the public
    /// sigstore-conformance suite drives it).
    Conformance {
        #[command(subcommand)]
        command: ConformanceCommand,
    },
    /// Notation (Notary Project) tools.
    Notation {
        #[command(subcommand)]
        command: NotationCommand,
    },
}

#[derive(Subcommand)]
enum NotationCommand {
    /// Verify one Notation envelope against a target descriptor, a trust policy and a trust store,
    /// offline. Exit 0 verified, 1 not verified, 2 bad input.
    VerifyEnvelope(umpire::notation_cmd::VerifyEnvelopeArgs),
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Load and validate like `serve`; print each policy's scope in canonical form and what
    /// deserves a look (globs that can never match, unused trust entries). Exit 0 valid, 2 invalid.
    Check {
        #[arg(long)]
        config: Option<PathBuf>,
        /// Check the configuration a ConfigMap in these manifests holds (e.g. the output of
        /// `kubectl kustomize deploy/`), with the files beside it in the ConfigMap.
        #[arg(
            short = 'f',
            long = "filename",
            value_name = "FILE",
            conflicts_with = "config"
        )]
        manifests: Option<PathBuf>,
        /// For a policy repository's CI: skip what exists only where umpire runs (TLS files, the
        /// cache key and Redis password variables).
        #[arg(long)]
        offline: bool,
    },
}

#[derive(Subcommand)]
enum ConformanceCommand {
    /// Verify a Sigstore bundle for an artifact (a path or sha256:<hex>). Exit 0 only if it verifies.
    VerifyBundle(umpire::conformance::VerifyBundleArgs),
}

/// Logs to stderr through a writer thread, so that a request never waits on a write; nothing is
/// dropped (a full buffer holds requests back instead). The guard flushes when dropped: keep it
/// until the program ends.
/// One-shot commands (`verify`, `config check`, ...) write directly, in order with their output.
fn init_logging(
    default_level: &str,
    json: bool,
    background: bool,
) -> Option<tracing_appender::non_blocking::WorkerGuard> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("UMPIRE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    // Colours only on a terminal: escape sequences in a collected log are noise at best.
    use std::io::IsTerminal as _;
    use tracing_subscriber::fmt::writer::BoxMakeWriter;
    let (writer, guard) = if background {
        let (w, g) = tracing_appender::non_blocking::NonBlockingBuilder::default()
            .lossy(false)
            .finish(std::io::stderr());
        (BoxMakeWriter::new(w), Some(g))
    } else {
        (BoxMakeWriter::new(std::io::stderr), None)
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(writer);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    guard
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
            // Logging as the configuration asks; a config that does not load is reported as text.
            let json = load_config(config.as_ref()).is_ok_and(|c| c.log_json);
            let _log_guard = init_logging("info", json, true);
            match runtime.block_on(serve(config)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    // Once, on stderr (where the logs go too).
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
            cosign,
            namespace,
            admission_review,
            manifests,
            images,
        } => {
            let _log_guard = init_logging("warn", false, false);
            let format = if json { "json".to_owned() } else { format };
            let cosign = cosign.given().then_some(cosign);
            let request = VerifyRequest {
                config,
                policy,
                cosign,
                namespace,
                format,
            };
            match admission_review.or(manifests) {
                Some(file) => runtime.block_on(admission_dry_run(request, &file)),
                None => runtime.block_on(verify(request, images)),
            }
        }
        Command::Config {
            command:
                ConfigCommand::Check {
                    config,
                    manifests,
                    offline,
                },
        } => {
            let _log_guard = init_logging("error", false, false);
            match manifests {
                Some(file) => umpire::config_cmd::check_manifests(&file, offline),
                None => umpire::config_cmd::check(config, offline),
            }
        }
        Command::Notation {
            command: NotationCommand::VerifyEnvelope(args),
        } => {
            let _log_guard = init_logging("error", false, false);
            notation_verify_envelope(&args)
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

fn notation_verify_envelope(args: &umpire::notation_cmd::VerifyEnvelopeArgs) -> ExitCode {
    match umpire::notation_cmd::verify_envelope_cmd(args) {
        Err(e) => {
            eprintln!("umpire: {e:#}");
            ExitCode::from(2)
        }
        Ok(report) => {
            for w in &report.logged {
                eprintln!("warning: {w}");
            }
            if report.skipped {
                eprintln!("skipped: the trust policy's level is skip; nothing was verified");
            }
            if report.verified() {
                match &report.signer {
                    Some(s) => println!("verified: {} (signed by {s})", args.envelope.display()),
                    None => println!("verified: {}", args.envelope.display()),
                }
                if report.revocation_unchecked {
                    eprintln!(
                        "note: revocation (OCSP, CRL) was not checked: umpire verifies offline"
                    );
                }
                ExitCode::SUCCESS
            } else {
                for f in &report.enforced {
                    eprintln!("not verified: {f}");
                }
                ExitCode::from(1)
            }
        }
    }
}

async fn serve(config_path: Option<PathBuf>) -> anyhow::Result<()> {
    // Before anything listens: a SIGTERM during start-up still stops cleanly.
    let shutdown = server::shutdown_signal();
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
    tokio::spawn(umpire::service::reload_on_change(Arc::clone(&live)));
    tokio::spawn(umpire::service::refresh_tuf_roots_forever(Arc::clone(
        &live,
    )));

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    // Every listener's task, awaited after SIGTERM so in-flight requests get their answers.
    let mut listeners = tokio::task::JoinSet::new();
    if let Some(addr) = metrics_listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr} (metrics_listen)"))?;
        let mut stop = stop_rx.clone();
        listeners.spawn(server::serve_metrics(
            Arc::clone(live.metrics()),
            listener,
            umpire::api::listener::Ceilings::from(&live.listeners().limits),
            async move {
                let _ = stop.changed().await;
            },
        ));
    }
    let umpire::service::ListenerSettings {
        grpc_tls,
        webhook,
        ext_authz,
        ..
    } = live.listeners();
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
            if let Err(e) = umpire::api::webhook::serve(live, w, listener, stopped).await {
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
        Some(tls) => server::serve_tls_on(live, listener, tls, shutdown).await,
        None => server::serve_on(live, listener, shutdown).await,
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

/// What `umpire verify` was asked, besides the images.
struct VerifyRequest {
    config: Option<PathBuf>,
    policy: Option<String>,
    cosign: Option<umpire::cli::CosignFlags>,
    namespace: Option<String>,
    format: String,
}

impl VerifyRequest {
    /// The engine for this request: the configuration (or the built-in default), with the cosign
    /// flags' policy added for `images`.
    fn engine(&self, images: &[String]) -> anyhow::Result<Arc<Engine>> {
        let config = match &self.cosign {
            Some(flags) => {
                let cwd = std::env::current_dir()?;
                flags.config(images, self.config.as_deref(), &cwd, |w| eprintln!("{w}"))?
            }
            None => load_config(self.config.as_ref())?,
        };
        Engine::standalone(config, credentials()?)
    }
}

/// `umpire verify --admission-review FILE` / `-f FILE`: what admission would answer.
async fn admission_dry_run(request: VerifyRequest, file: &std::path::Path) -> ExitCode {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("umpire: cannot read {}: {e}", file.display());
            return ExitCode::from(2);
        }
    };
    let namespace = request
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let reviews = match umpire::cli::admission_reviews(&text, &namespace) {
        Ok(r) if !r.is_empty() => r,
        Ok(_) => {
            eprintln!(
                "umpire: {} holds no AdmissionReview, Pod or workload",
                file.display()
            );
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("umpire: {}: {e:#}", file.display());
            return ExitCode::from(2);
        }
    };
    let live = match request.engine(&[]).and_then(|e| {
        Ok(Arc::new(umpire::Live::new(
            e.config().clone(),
            None,
            credentials()?,
        )?))
    }) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("umpire: {e:#}");
            return ExitCode::from(2);
        }
    };
    let mut denied = false;
    for body in reviews {
        let described = umpire::api::admission::parse_review(&body)
            .map(|r| {
                let name = r.object["metadata"]["name"]
                    .as_str()
                    .unwrap_or("?")
                    .to_owned();
                format!("{} {}/{name} ({})", r.kind, r.namespace, r.operation)
            })
            .unwrap_or_else(|_| "an AdmissionReview".into());
        match umpire::api::webhook::dry_run(&live, &body).await {
            Ok((allowed, message, warnings, pins)) => {
                let outcome = if allowed { "ADMITTED" } else { "DENIED" };
                println!("{described}: {outcome}");
                if let Some(m) = message {
                    println!("  {m}");
                }
                for w in warnings {
                    println!("  warning: {w}");
                }
                for p in pins {
                    println!("  pin (mutate): {p}");
                }
                denied |= !allowed;
            }
            Err(e) => {
                println!("{described}: not an admission request: {e}");
                return ExitCode::from(2);
            }
        }
    }
    if denied {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

async fn verify(request: VerifyRequest, images: Vec<String>) -> ExitCode {
    let engine = match request.engine(&images) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("umpire: {e:#}");
            return ExitCode::from(2);
        }
    };
    let VerifyRequest {
        config,
        policy,
        cosign,
        namespace,
        format,
    } = request;
    let format = format.as_str();
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
    let options = umpire::engine::Options {
        namespace,
        ..Default::default()
    };
    match engine.verify_batch_with(&requests, options).await {
        Ok(mut verdicts) => {
            // Without a configuration the setting a message names is a flag.
            if cosign.is_some() && config.is_none() {
                for f in verdicts.iter_mut().flat_map(|v| v.findings.iter_mut()) {
                    f.message = f.message.replace(
                        umpire::evidence::registry::INSECURE_HINT,
                        "pass --allow-insecure-registry (umpire verify's flags make its configuration)",
                    );
                }
            }
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
