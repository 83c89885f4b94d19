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

/// Lines of a source file before its test module.
fn non_test_code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    text.split("#[cfg(test)]")
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// Each function of `code` (outside test modules) with its length in lines: from its `fn` line to
/// the closing brace at the same indentation (rustfmt's layout).
fn function_lengths(code: &str) -> Vec<(String, usize)> {
    let lines: Vec<&str> = code.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        let indent = &line[..line.len() - trimmed.len()];
        let mut rest = trimmed;
        for prefix in [
            "pub(crate) ",
            "pub(super) ",
            "pub ",
            "async ",
            "const ",
            "unsafe ",
        ] {
            rest = rest.strip_prefix(prefix).unwrap_or(rest);
        }
        let Some(signature) = rest.strip_prefix("fn ") else {
            continue;
        };
        let name: String = signature
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let end = lines[i..]
            .iter()
            .position(|l| *l == format!("{indent}}}") || (l.ends_with(';') && l.contains("fn ")));
        if let Some(len) = end {
            out.push((name, len + 1));
        }
    }
    out
}

#[test]
fn no_source_file_passes_600_lines_and_no_function_150() {
    let mut long_files = Vec::new();
    let mut long_functions = Vec::new();
    for (rel, path) in source_files() {
        let code = non_test_code(&path);
        let lines = code.lines().count();
        if lines > 600 {
            long_files.push(format!("{rel}: {lines}"));
        }
        for (name, len) in function_lengths(&code) {
            if len > 150 {
                long_functions.push(format!("{rel}: {name} ({len} lines)"));
            }
        }
    }
    assert!(
        long_files.is_empty(),
        "files over 600 lines: {long_files:?}"
    );
    assert!(
        long_functions.is_empty(),
        "functions over 150 lines: {long_functions:?}"
    );
}

#[test]
fn the_engine_only_orchestrates_in_at_most_600_lines() {
    let lines: usize = source_files()
        .iter()
        .filter(|(rel, _)| rel == "engine.rs" || rel.starts_with("engine/"))
        .map(|(_, path)| non_test_code(path).lines().count())
        .sum();
    assert!(
        lines <= 600,
        "the engine holds {lines} lines of non-test code"
    );
    // What is not orchestration lives in its module: the engine defines no finding text of its
    // own, no evidence reading and no verification.
    let engine = non_test_code(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src/engine.rs"));
    for foreign in [
        "discovery::",
        "check_layer",
        "check_bundle",
        "evaluate_signatures",
    ] {
        assert!(
            !engine.contains(foreign),
            "the engine calls {foreign} itself"
        );
    }
}
