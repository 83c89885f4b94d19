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
        adhoc: AdHoc,
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Configuration tools.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// The sigstore-conformance client protocol (see ../shared/conformance/README.md).
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
    },
}

/// cosign-like ad-hoc verification: a one-policy configuration built in memory.
#[derive(clap::Args, Default)]
struct AdHoc {
    /// Require a signature by this public key (PEM file), as `cosign verify --key`.
    #[arg(long, conflicts_with = "config")]
    key: Option<PathBuf>,
    /// Require a keyless signature for this certificate identity (exact).
    #[arg(long, conflicts_with_all = ["config", "key"])]
    certificate_identity: Option<String>,
    /// ... or for identities matching this regex (whole value).
    #[arg(long, conflicts_with_all = ["config", "key", "certificate_identity"])]
    certificate_identity_regexp: Option<String>,
    /// The OIDC issuer of a keyless identity (exact).
    #[arg(long, conflicts_with = "config")]
    certificate_oidc_issuer: Option<String>,
    /// ... or issuers matching this regex (whole value).
    #[arg(long, conflicts_with_all = ["config", "certificate_oidc_issuer"])]
    certificate_oidc_issuer_regexp: Option<String>,
    /// A Sigstore trusted_root.json for keyless (default: the embedded public-good root).
    #[arg(long, conflicts_with = "config")]
    trusted_root: Option<PathBuf>,
    /// Also require an attestation of this predicate type by the same signer.
    #[arg(long, conflicts_with = "config")]
    attestation_type: Option<String>,
    /// Talk plain HTTP to the images' registries (cosign's flag; for local registries only).
    #[arg(long, conflicts_with = "config")]
    allow_insecure_registry: bool,
}

impl AdHoc {
    fn given(&self) -> bool {
        self.key.is_some()
            || self.certificate_identity.is_some()
            || self.certificate_identity_regexp.is_some()
            || self.certificate_oidc_issuer.is_some()
            || self.certificate_oidc_issuer_regexp.is_some()
            || self.trusted_root.is_some()
            || self.attestation_type.is_some()
            || self.allow_insecure_registry
    }

    /// The one-policy configuration these flags describe (JSON, which is YAML).
    fn config(&self, images: &[String]) -> anyhow::Result<umpire::config::Config> {
        use serde_json::json;
        let cwd = std::env::current_dir()?;
        let absolute = |p: &PathBuf| cwd.join(p).display().to_string();
        let mut trust = json!({});
        let authority = match &self.key {
            Some(key) => {
                trust["keys"] = json!({ "cli": absolute(key) });
                json!({ "key": "cli" })
            }
            None => {
                let mut keyless = json!({ "trust": "cli" });
                match (
                    &self.certificate_identity,
                    &self.certificate_identity_regexp,
                ) {
                    (Some(s), _) => keyless["subject"] = json!(s),
                    (None, Some(r)) => keyless["subject_regex"] = json!(r),
                    (None, None) => anyhow::bail!(
                        "give --key, or --certificate-identity[-regexp] with --certificate-oidc-issuer[-regexp]"
                    ),
                }
                match (
                    &self.certificate_oidc_issuer,
                    &self.certificate_oidc_issuer_regexp,
                ) {
                    (Some(s), _) => keyless["issuer"] = json!(s),
                    (None, Some(r)) => keyless["issuer_regex"] = json!(r),
                    (None, None) => anyhow::bail!(
                        "a keyless identity needs --certificate-oidc-issuer or --certificate-oidc-issuer-regexp"
                    ),
                }
                let root = self
                    .trusted_root
                    .as_ref()
                    .map_or_else(|| "embedded".to_owned(), absolute);
                trust["sigstore"] = json!({ "cli": root });
                json!({ "keyless": keyless })
            }
        };
        let mut policy = json!({
            "name": "command-line",
            "images": ["**"],
            "signatures": { "authorities": [authority.clone()] },
        });
        if let Some(t) = &self.attestation_type {
            policy["attestations"] = json!([{ "type": t, "authorities": [authority] }]);
        }
        let mut config = json!({ "trust": trust, "policies": [policy], "default": "deny" });
        if self.allow_insecure_registry {
            let mut hosts: Vec<String> = images
                .iter()
                .filter_map(|i| match ImageRef::parse(i) {
                    Ok(ImageRef::Registry(r)) => Some(r.registry),
                    _ => None,
                })
                .collect();
            hosts.sort();
            hosts.dedup();
            eprintln!(
                "umpire: WARNING --allow-insecure-registry: plain HTTP to {}",
                hosts.join(", ")
            );
            config["registries"] = json!(
                hosts
                    .iter()
                    .map(|h| json!({ "host": h, "insecure": true }))
                    .collect::<Vec<_>>()
            );
        }
        Ok(umpire::config::Config::from_yaml(
            &config.to_string(),
            &cwd,
            "the command line",
        )?)
    }
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
            adhoc,
            images,
        } => {
            let _log_guard = init_logging("warn", false, false);
            let format = if json { "json".to_owned() } else { format };
            let adhoc = adhoc.given().then_some(adhoc);
            runtime.block_on(verify(config, policy, adhoc, &format, images))
        }
        Command::Config {
            command: ConfigCommand::Check { config },
        } => {
            let _log_guard = init_logging("error", false, false);
            config_check(config)
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

fn config_check(path: Option<PathBuf>) -> ExitCode {
    let config = match load_config(path.as_ref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("umpire: invalid configuration: {e:#}");
            return ExitCode::from(2);
        }
    };
    // The listeners build their TLS when they start; check now that they will, as serve would.
    let tls = [
        ("tls", config.grpc_tls.as_ref()),
        ("webhook", config.webhook.as_ref().map(|w| &w.tls)),
    ];
    for (key, settings) in tls {
        if let Some(settings) = settings
            && let Err(e) = umpire::api::tls::server_config(settings, &[])
        {
            eprintln!("umpire: invalid configuration: {key}: {e:#}");
            return ExitCode::from(2);
        }
    }
    let origin = path.as_ref().map_or_else(
        || "the built-in default".to_owned(),
        |p| p.display().to_string(),
    );
    println!("{origin}: valid");
    for line in config.scopes() {
        println!("  {line}");
    }
    for w in config.warnings.iter().chain(&config.unused_trust()) {
        println!("warning: {w}");
    }
    ExitCode::SUCCESS
}

async fn verify(
    config: Option<PathBuf>,
    policy: Option<String>,
    adhoc: Option<AdHoc>,
    format: &str,
    images: Vec<String>,
) -> ExitCode {
    let setup = || -> anyhow::Result<Arc<Engine>> {
        let config = match &adhoc {
            Some(a) => a.config(&images)?,
            None => load_config(config.as_ref())?,
        };
        Engine::standalone(config, credentials()?)
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
        Ok(mut verdicts) => {
            // Without a configuration the setting a message names is a flag.
            if adhoc.is_some() {
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
