//! The architecture invariants ARCHITECTURE.md states, checked on the source: the module graph
//! (`use crate::...`) has no cycle, `verify` does no I/O and knows no finding codes, `evidence`
//! knows OCI and cosign conventions but never policies or verdicts.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Every `.rs` file under `src/`: (path relative to `src/` with `/` separators, full path).
fn source_files() -> Vec<(String, std::path::PathBuf)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path
                    .strip_prefix(&src)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                files.push((rel, path));
            }
        }
    }
    files
}

/// `crate::<module>` references of each top-level module, test code left out.
fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (rel, path) in source_files() {
        let top = rel
            .split('/')
            .next()
            .unwrap_or_default()
            .trim_end_matches(".rs")
            .to_owned();
        if top == "main" || top == "lib" || rel.ends_with("tests.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        let refs = graph.entry(top.clone()).or_default();
        for (i, _) in code.match_indices("crate::") {
            let name: String = code[i + 7..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() && name != top {
                refs.insert(name);
            }
        }
    }
    graph
}

fn reaches(graph: &BTreeMap<String, BTreeSet<String>>, from: &str, to: &str) -> bool {
    let mut seen = BTreeSet::new();
    let mut stack = vec![from.to_owned()];
    while let Some(m) = stack.pop() {
        for next in graph.get(&m).into_iter().flatten() {
            if next == to {
                return true;
            }
            if seen.insert(next.clone()) {
                stack.push(next.clone());
            }
        }
    }
    false
}

#[test]
fn the_module_graph_has_no_cycle() {
    let graph = module_graph();
    let cycles: Vec<(String, String)> = graph
        .iter()
        .flat_map(|(m, refs)| refs.iter().map(move |r| (m.clone(), r.clone())))
        .filter(|(m, r)| reaches(&graph, r, m))
        .collect();
    assert!(cycles.is_empty(), "module edges on a cycle: {cycles:?}");
}

#[test]
fn verify_does_no_io_and_knows_no_finding_codes() {
    let graph = module_graph();
    let uses = &graph["verify"];
    assert!(
        uses.iter().all(|m| m == "digest" || m == "gojson"),
        "verify reaches beyond digest and gojson: {uses:?}"
    );
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/verify");
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        for io in ["std::fs", "tokio", "reqwest", "std::net", "std::process"] {
            assert!(!code.contains(io), "{} uses {io}", path.display());
        }
    }
}

#[test]
fn evidence_knows_no_policies_or_verdicts() {
    let graph = module_graph();
    for m in ["policy", "verdict", "engine", "config", "service", "checks"] {
        assert!(!graph["evidence"].contains(m), "evidence uses crate::{m}");
    }
}

#[test]
fn the_map_names_every_source_file() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let map = std::fs::read_to_string(root.join("ARCHITECTURE.md")).unwrap();
    let mut missing = Vec::new();
    for (rel, path) in source_files() {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if rel == "lib.rs" || name == "tests.rs" {
            continue;
        }
        let folder = rel.rsplit_once('/').map(|(f, _)| format!("`{f}/`"));
        let named = map.contains(&format!("`{rel}`"))
            || folder.as_ref().is_some_and(|f| {
                map.contains(f.as_str()) && (name == "mod.rs" || map.contains(&format!("`{name}`")))
            });
        if !named {
            missing.push(rel);
        }
    }
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md does not name: {missing:?}"
    );
}

#[test]
fn trust_material_enters_only_through_trust_load() {
    // Besides `trust/`, only the offline Notation debugging command reads trust material (from its
    // arguments), and `verify/` defines the readers. The conformance command and the engine take
    // theirs from `trust/` (`trust::load_for_bundle`, the configuration's `offline_root`).
    let mut readers = Vec::new();
    for (rel, path) in source_files() {
        if rel.starts_with("trust/") || rel.starts_with("verify/") || rel == "notation_cmd.rs" {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        for reader in [
            "SigstoreRoot::from_json",
            "SigstoreRoot::public_good",
            "PublicKey::from_pem",
            "load_store",
            "parse_trust_policy",
            "SigstoreRoot::offline",
            "SIGSTORE_PRODUCTION_TRUSTED_ROOT",
            "SIGSTORE_STAGING_TRUSTED_ROOT",
            "SIGSTORE_GITHUB_TRUSTED_ROOT",
        ] {
            if code.contains(reader) {
                readers.push(format!("{rel}: {reader}"));
            }
        }
    }
    assert!(
        readers.is_empty(),
        "trust material read outside trust::load: {readers:?}"
    );
}
