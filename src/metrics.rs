//! Prometheus metrics, served as text at `GET /metrics` on `metrics_listen` (with `GET /healthz`).
//! One `Metrics` lives for the whole process, across config reloads.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VerdictLabels {
    pub verdict: &'static str,
    pub code: &'static str,
    /// The policies that judged (names from the configuration, comma-separated; empty when
    /// none applied): bounded by the configuration.
    pub policy: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabels {
    pub version: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CertificateLabels {
    pub listener: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CachedLabels {
    pub cached: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LayerLabels {
    pub layer: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RegistryLabels {
    pub host: String,
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StepLabels {
    pub step: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 50 µs .. ~26 s
    Histogram::new(exponential_buckets(0.00005, 2.0, 20))
}

/// Hot verdict series by policy name (see [`Metrics::satisfied_series`]).
#[derive(Default)]
pub struct SatisfiedSeries(std::collections::HashMap<String, Counter>);

pub struct Metrics {
    registry: Registry,
    pub verdicts: Family<VerdictLabels, Counter>,
    pub latency: HistogramFamily<CachedLabels>,
    pub cache_hits: Family<LayerLabels, Counter>,
    pub cache_misses: Counter,
    pub coalesced_waits: Counter,
    pub registry_requests: Family<RegistryLabels, Counter>,
    /// All registry requests (kept beside the family so the total needs no scan).
    registry_requests_all: Counter,
    pub step_seconds: HistogramFamily<StepLabels>,
    pub redis_errors: Counter,
    pub reloads: Family<ResultLabels, Counter>,
    pub shed: Counter,
    /// Failures reported by warn-mode policies, by policy (names come from the configuration).
    pub policy_warnings: Family<PolicyLabels, Counter>,
    /// The configuration generation live: 0 at start, one more per successful reload.
    pub config_generation: Counter,
    /// Series of the families above that every cached answer touches, looked up once.
    pub latency_cached: Histogram,
    pub latency_uncached: Histogram,
    /// When each listener's serving certificate expires (Unix seconds), set as it is loaded.
    pub certificate_expiry: Family<CertificateLabels, prometheus_client::metrics::gauge::Gauge>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct PolicyLabels {
    pub policy: String,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("umpire");
        let verdicts: Family<VerdictLabels, Counter> = Family::default();
        let latency: HistogramFamily<CachedLabels> =
            Family::new_with_constructor(latency_histogram as fn() -> Histogram);
        let latency_cached = latency
            .get_or_create(&CachedLabels { cached: "true" })
            .clone();
        let latency_uncached = latency
            .get_or_create(&CachedLabels { cached: "false" })
            .clone();
        let build_info: Family<BuildLabels, prometheus_client::metrics::gauge::Gauge> =
            Family::default();
        build_info
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        let m = Self {
            latency_cached,
            latency_uncached,
            certificate_expiry: Family::default(),
            verdicts,
            latency,
            cache_hits: Family::default(),
            cache_misses: Counter::default(),
            coalesced_waits: Counter::default(),
            registry_requests: Family::default(),
            registry_requests_all: Counter::default(),
            step_seconds: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
            redis_errors: Counter::default(),
            reloads: Family::default(),
            shed: Counter::default(),
            policy_warnings: Family::default(),
            config_generation: Counter::default(),
            registry: Registry::default(),
        };
        registry.register(
            "verdicts",
            "Verdicts answered, by verdict, leading finding code and policy",
            m.verdicts.clone(),
        );
        registry.register(
            "build_info",
            "The running umpire's version (always 1)",
            build_info,
        );
        registry.register(
            "certificate_expiry_timestamp_seconds",
            "When each listener's serving certificate expires (Unix seconds)",
            m.certificate_expiry.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time to answer one image, cached or cold",
            m.latency.clone(),
        );
        registry.register(
            "cache_hits",
            "Verdicts served from a cache, by layer (local, redis)",
            m.cache_hits.clone(),
        );
        registry.register(
            "cache_misses",
            "Verdict cache misses",
            m.cache_misses.clone(),
        );
        registry.register(
            "coalesced_waits",
            "Requests that waited on an identical verification in flight",
            m.coalesced_waits.clone(),
        );
        registry.register(
            "registry_requests",
            "HTTP requests to registries, by host and status",
            m.registry_requests.clone(),
        );
        registry.register(
            "verification_step_seconds",
            "Time spent per verification step",
            m.step_seconds.clone(),
        );
        registry.register(
            "redis_errors",
            "Failed shared-cache operations (served from the local cache instead)",
            m.redis_errors.clone(),
        );
        registry.register(
            "reloads",
            "Configuration reloads, by result",
            m.reloads.clone(),
        );
        registry.register(
            "config_generation",
            "Successful configuration reloads since start (the generation live)",
            m.config_generation.clone(),
        );
        registry.register(
            "policy_warnings",
            "Failures of warn-mode policies (reported, never denied), by policy",
            m.policy_warnings.clone(),
        );
        registry.register(
            "shed_requests",
            "Requests refused because too many were in flight",
            m.shed.clone(),
        );
        Self { registry, ..m }
    }

    pub fn observe_step(&self, step: &'static str, elapsed: Duration) {
        self.step_seconds
            .get_or_create(&StepLabels { step })
            .observe(elapsed.as_secs_f64());
    }

    /// The `verdicts_total{verdict="allowed",code="SATISFIED",policy=P}` series of each policy
    /// named: the series every cached allow touches, looked up once per configuration.
    pub fn satisfied_series<'a>(
        &self,
        policies: impl IntoIterator<Item = &'a str>,
    ) -> SatisfiedSeries {
        let series = policies
            .into_iter()
            .map(|policy| {
                let labels = VerdictLabels {
                    verdict: "allowed",
                    code: "SATISFIED",
                    policy: policy.to_owned(),
                };
                (
                    policy.to_owned(),
                    self.verdicts.get_or_create(&labels).clone(),
                )
            })
            .collect();
        SatisfiedSeries(series)
    }

    /// Counts one answer: its warnings by policy, its verdict and first problem code, its latency.
    pub fn record_verdict(
        &self,
        verdict: &crate::verdict::Verdict,
        satisfied: &SatisfiedSeries,
        elapsed: Duration,
    ) {
        self.record_answer(verdict, verdict.cached, satisfied, elapsed);
    }

    /// As [`Metrics::record_verdict`], for a verdict answered `cached` or not.
    pub fn record_answer(
        &self,
        verdict: &crate::verdict::Verdict,
        cached: bool,
        satisfied: &SatisfiedSeries,
        elapsed: Duration,
    ) {
        use crate::verdict::Code;
        for w in &verdict.warnings {
            let labels = PolicyLabels {
                policy: w.policy.clone(),
            };
            self.policy_warnings.get_or_create(&labels).inc();
        }
        let code = verdict
            .findings
            .iter()
            .find(|f| f.code != Code::Satisfied)
            .map_or(Code::Satisfied.as_str(), |f| f.code.as_str());
        match satisfied.0.get(&verdict.policy) {
            Some(counter) if verdict.allowed && code == Code::Satisfied.as_str() => {
                counter.inc();
            }
            _ => {
                let labels = VerdictLabels {
                    verdict: if verdict.allowed { "allowed" } else { "denied" },
                    code,
                    policy: verdict.policy.clone(),
                };
                self.verdicts.get_or_create(&labels).inc();
            }
        }
        let latency = if cached {
            &self.latency_cached
        } else {
            &self.latency_uncached
        };
        latency.observe(elapsed.as_secs_f64());
    }

    pub fn registry_request(&self, host: &str, status: &str) {
        self.registry_requests
            .get_or_create(&RegistryLabels {
                host: host.to_owned(),
                status: status.to_owned(),
            })
            .inc();
        self.registry_requests_all.inc();
    }

    /// The total of registry requests so far (all hosts and statuses).
    pub fn registry_request_total(&self) -> u64 {
        self.registry_requests_all.get()
    }

    pub fn encode(&self) -> String {
        let mut text = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            tracing::error!("encoding metrics: {e}");
        }
        text
    }
}
