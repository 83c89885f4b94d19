//! Rego policies (regorus), compiled once at load and evaluated per verified attestation. The
//! convention: package `umpire`, input `{"image": {"reference", "digest"}, "statement", "predicate"}`,
//! rule `deny` a set of messages; a non-empty set denies. Evaluation time is bounded.

use std::num::NonZeroU32;
use std::time::Duration;

/// Time one evaluation may take.
const EVALUATION_LIMIT: Duration = Duration::from_secs(1);

pub struct RegoPolicy {
    pub path: String,
    engine: regorus::Engine,
}

impl std::fmt::Debug for RegoPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RegoPolicy({})", self.path)
    }
}

impl RegoPolicy {
    /// Compiles `source`; it must be package `umpire` and define `deny`.
    pub fn compile(path: &str, source: &str) -> Result<Self, String> {
        let mut engine = regorus::Engine::new();
        engine.set_execution_timer_config(regorus::utils::limits::ExecutionTimerConfig {
            limit: EVALUATION_LIMIT,
            check_interval: NonZeroU32::MIN,
        });
        let package = engine
            .add_policy(path.to_owned(), source.to_owned())
            .map_err(|e| e.to_string())?;
        if package != "data.umpire" {
            return Err(format!(
                "the policy's package is {package:?}; it must be `package umpire`"
            ));
        }
        // Evaluate once on an empty input: a policy that cannot even run is rejected at load.
        let mut probe = engine.clone();
        probe.set_input(regorus::Value::new_object());
        probe
            .eval_rule("data.umpire.deny".to_owned())
            .map_err(|e| format!("the policy has no usable `deny` rule: {e}"))?;
        Ok(Self {
            path: path.to_owned(),
            engine,
        })
    }

    /// The `deny` messages for `input`. An evaluation error is returned as an error (which denies).
    pub fn deny(&self, input: &serde_json::Value) -> Result<Vec<String>, String> {
        let mut engine = self.engine.clone();
        let value = regorus::Value::from_json_str(&input.to_string()).map_err(|e| e.to_string())?;
        engine.set_input(value);
        let result = engine
            .eval_rule("data.umpire.deny".to_owned())
            .map_err(|e| e.to_string())?;
        let json: serde_json::Value =
            serde_json::from_str(&result.to_json_str().map_err(|e| e.to_string())?)
                .map_err(|e| e.to_string())?;
        Ok(match json {
            serde_json::Value::Array(items) => items
                .into_iter()
                .map(|m| match m {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                })
                .collect(),
            serde_json::Value::Null => Vec::new(),
            other => vec![other.to_string()],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = r#"
package umpire

deny contains msg if {
    input.predicate.runDetails.builder.id != "https://github.com/actions/runner/github-hosted"
    msg := sprintf("builder %v is not GitHub-hosted", [input.predicate.runDetails.builder.id])
}
"#;

    #[test]
    fn deny_messages() {
        let p = RegoPolicy::compile("p.rego", POLICY).unwrap();
        let bad =
            serde_json::json!({"predicate": {"runDetails": {"builder": {"id": "https://evil"}}}});
        assert_eq!(
            p.deny(&bad).unwrap(),
            ["builder https://evil is not GitHub-hosted"]
        );
        let good = serde_json::json!({"predicate": {"runDetails": {"builder": {"id": "https://github.com/actions/runner/github-hosted"}}}});
        assert!(p.deny(&good).unwrap().is_empty());
    }

    #[test]
    fn wrong_package_or_syntax_is_rejected() {
        assert!(
            RegoPolicy::compile("p.rego", "package other\ndeny contains 1 if { true }")
                .unwrap_err()
                .contains("package umpire")
        );
        assert!(RegoPolicy::compile("p.rego", "package umpire\ndeny contains if {").is_err());
    }
}
