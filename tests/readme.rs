//! README's configuration samples are real files under `examples/readme/` that load: each yaml
//! block that is an umpire configuration names its file on its first line and is that file,
//! byte for byte, and every such file passes `umpire config check --offline`. README's links stay
//! inside the repository.

use std::path::Path;
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The ```yaml blocks of README.md.
fn yaml_blocks() -> Vec<String> {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    readme
        .split("```yaml\n")
        .skip(1)
        .filter_map(|rest| rest.split_once("```").map(|(block, _)| block.to_owned()))
        .collect()
}

/// A block that configures umpire (not a Kubernetes object, an Envoy filter or a CI job).
fn is_umpire_config(block: &str) -> bool {
    let Ok(v) = serde_yaml_ng::from_str::<serde_yaml_ng::Value>(block) else {
        return false;
    };
    let Some(map) = v.as_mapping() else {
        return false;
    };
    let umpire_keys = [
        "listen",
        "registries",
        "trust",
        "policies",
        "default",
        "limits",
        "cache",
        "webhook",
        "ext_authz",
        "ext_authz_listen",
        "tls",
        "metrics_listen",
    ];
    !map.contains_key("apiVersion")
        && map
            .keys()
            .filter_map(|k| k.as_str())
            .any(|k| umpire_keys.contains(&k))
}

#[test]
fn every_configuration_sample_is_a_file_that_loads() {
    let mut checked = 0;
    for block in yaml_blocks().iter().filter(|b| is_umpire_config(b)) {
        let first = block.lines().next().unwrap_or_default();
        let name = first
            .strip_prefix("# ")
            .filter(|n| n.starts_with("examples/") && n.ends_with(".yaml"))
            .unwrap_or_else(|| panic!("a README sample names no file under examples/:\n{block}"));
        let file = std::fs::read_to_string(root().join(name))
            .unwrap_or_else(|e| panic!("README names {name}: {e}"));
        assert_eq!(&file, block, "README's sample differs from {name}");
        let out = Command::new(env!("CARGO_BIN_EXE_umpire"))
            .args(["config", "check", "--offline", "--config", name])
            .current_dir(root())
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        checked += 1;
    }
    assert!(checked >= 12, "{checked} samples");
    // Every file there is shown in README (none drifts unseen).
    for entry in std::fs::read_dir(root().join("examples/readme")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.ends_with(".yaml") {
            let header = format!("# examples/readme/{name}\n");
            assert!(
                yaml_blocks().iter().any(|b| b.starts_with(&header)),
                "examples/readme/{name} is not shown in README"
            );
        }
    }
}

#[test]
fn readme_links_stay_inside_the_repository() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    assert!(
        !readme.contains("../shared"),
        "README points users outside the repository"
    );
    for (i, _) in readme.match_indices("](") {
        let target: String = readme[i + 2..].chars().take_while(|c| *c != ')').collect();
        if target.starts_with("http") || target.starts_with('#') {
            continue;
        }
        let path = target.split('#').next().unwrap_or_default();
        assert!(
            root().join(path).exists(),
            "README links to {target}, which the repository does not hold"
        );
    }
}
