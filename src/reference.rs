//! Image references as users write them: `host[:port]/repo[:tag][@sha256:hex]` for registries, and
//! `oci:PATH[:TAG|@sha256:hex]` for local OCI image layouts. Parsing is strict and pure.

use std::fmt;
use std::path::PathBuf;

use crate::digest::{Digest, DigestError};

/// Docker Hub's canonical name, used for references without a registry host.
pub const DOCKER_HUB: &str = "docker.io";

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ImageRef {
    Registry(RegistryRef),
    Layout(LayoutRef),
}

/// An image in an OCI distribution registry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RegistryRef {
    /// `host[:port]`, with Docker Hub normalised to `docker.io`.
    pub registry: String,
    /// Repository path, e.g. `library/nginx`.
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

/// An image in a local OCI image layout directory.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LayoutRef {
    pub path: PathBuf,
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReferenceError {
    #[error("image reference is empty")]
    Empty,
    #[error("image reference {0:?} is too long (at most 1024 characters)")]
    TooLong(String),
    #[error("image reference {reference:?}: {digest}")]
    Digest {
        reference: String,
        digest: DigestError,
    },
    #[error("image reference {reference:?} has an invalid {part}: {value:?}")]
    Invalid {
        reference: String,
        part: &'static str,
        value: String,
    },
}

const MAX_REFERENCE_LEN: usize = 1024;
const MAX_TAG_LEN: usize = 128;
const MAX_REPOSITORY_LEN: usize = 255;

impl ImageRef {
    pub fn parse(input: &str) -> Result<Self, ReferenceError> {
        if input.is_empty() {
            return Err(ReferenceError::Empty);
        }
        if input.len() > MAX_REFERENCE_LEN {
            return Err(ReferenceError::TooLong(input.chars().take(64).collect()));
        }
        match input.strip_prefix("oci:") {
            Some(rest) => parse_layout(input, rest).map(ImageRef::Layout),
            None => parse_registry(input).map(ImageRef::Registry),
        }
    }

    pub fn digest(&self) -> Option<&Digest> {
        match self {
            ImageRef::Registry(r) => r.digest.as_ref(),
            ImageRef::Layout(l) => l.digest.as_ref(),
        }
    }

    pub fn tag(&self) -> Option<&str> {
        match self {
            ImageRef::Registry(r) => r.tag.as_deref(),
            ImageRef::Layout(l) => l.tag.as_deref(),
        }
    }

    /// What policy globs are matched against: `host[:port]/repository`, or `oci:PATH` for layouts.
    pub fn policy_subject(&self) -> String {
        match self {
            ImageRef::Registry(r) => format!("{}/{}", r.registry, r.repository),
            ImageRef::Layout(l) => format!("oci:{}", l.path.display()),
        }
    }

    /// The same image pinned to `digest` (tag dropped).
    pub fn pinned(&self, digest: Digest) -> ImageRef {
        match self {
            ImageRef::Registry(r) => ImageRef::Registry(RegistryRef {
                tag: None,
                digest: Some(digest),
                ..r.clone()
            }),
            ImageRef::Layout(l) => ImageRef::Layout(LayoutRef {
                tag: None,
                digest: Some(digest),
                ..l.clone()
            }),
        }
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (tag, digest) = (self.tag(), self.digest());
        f.write_str(&self.policy_subject())?;
        if let Some(t) = tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

fn split_digest(reference: &str, s: &str) -> Result<(String, Option<Digest>), ReferenceError> {
    match s.rsplit_once('@') {
        Some((name, d)) => Digest::parse(d)
            .map(|d| (name.to_owned(), Some(d)))
            .map_err(|digest| ReferenceError::Digest {
                reference: reference.to_owned(),
                digest,
            }),
        None => Ok((s.to_owned(), None)),
    }
}

fn valid_tag(t: &str) -> bool {
    let mut bytes = t.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphanumeric() || b == b'_')
        && t.len() <= MAX_TAG_LEN
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// A repository name as the distribution spec allows it: components joined by `/`.
pub fn valid_repository(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_REPOSITORY_LEN && name.split('/').all(valid_component)
}

/// A tag as the distribution spec allows it.
pub fn valid_tag_name(tag: &str) -> bool {
    valid_tag(tag)
}

/// A repository path component: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() || !is_alnum_lower(b[0]) || !is_alnum_lower(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if is_alnum_lower(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !is_alnum_lower(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

fn is_alnum_lower(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// The one spelling of a registry `host[:port]`, as the client that dials it reads it (Go's
/// `net` package in containerd and cosign, Docker's reference rules): the name lowercased; a port
/// in canonical decimal (`05000` is `5000`: Go dials the number), HTTPS's default `:443` dropped;
/// an IPv6 literal in its RFC 5952 form (`[0::1]` is `[::1]`); Docker Hub's aliases folded into
/// `docker.io`. Spellings that resolvers read in more than one way are refused: a name whose last
/// label is numeric must be a dotted-quad IPv4 address in canonical form (`127.1`, `0x7f.0.0.1`,
/// `127.000.0.1` and `2130706433` are refused), IPv6 zones, port 0 and ports past 65535.
/// Policy selection, caches, registry settings, credentials and the gate all see this form.
pub fn canonical_host(host: &str) -> Result<String, String> {
    let refuse = |why: &str| Err(format!("{host:?} is not a registry host[:port]: {why}"));
    let (name, port) = if let Some(rest) = host.strip_prefix('[') {
        let Some((addr, tail)) = rest.split_once(']') else {
            return refuse("an IPv6 literal without its closing ]");
        };
        let Ok(ip) = addr.parse::<std::net::Ipv6Addr>() else {
            return refuse("not an IPv6 address (zones are not accepted)");
        };
        let port = match tail {
            "" => None,
            t => match t.strip_prefix(':') {
                Some(p) => Some(p),
                None => return refuse("text after the IPv6 literal"),
            },
        };
        // An IPv4-mapped address is dialled as the IPv4 address it maps.
        match ip.to_ipv4_mapped() {
            Some(v4) => (v4.to_string(), port),
            None => (format!("[{ip}]"), port),
        }
    } else {
        let (name, port) = match host.split_once(':') {
            Some((n, p)) => (n, Some(p)),
            None => (host, None),
        };
        let name = name.to_ascii_lowercase();
        let labels_ok = !name.is_empty()
            && name.len() <= 253
            && name.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if !labels_ok {
            return refuse("invalid host name");
        }
        let last = name.rsplit('.').next().unwrap_or_default();
        let numeric = last.bytes().all(|b| b.is_ascii_digit()) || last.starts_with("0x");
        if numeric {
            match name.parse::<std::net::Ipv4Addr>() {
                Ok(ip) if ip.to_string() == name => {}
                _ => {
                    return refuse(
                        "a numeric host must be an IPv4 address written a.b.c.d without leading zeros",
                    );
                }
            }
        }
        (name, port)
    };
    let port = match port {
        None => None,
        Some(p) => {
            if p.is_empty() || p.len() > 10 || !p.bytes().all(|b| b.is_ascii_digit()) {
                return refuse("the port is not a number");
            }
            match p.parse::<u32>() {
                Ok(n @ 1..=65535) => Some(n),
                _ => return refuse("the port is not between 1 and 65535"),
            }
        }
    };
    let name = match name.as_str() {
        "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB.to_owned(),
        _ => name,
    };
    // Dropping `:443` must leave something that still reads as a host (`registry:443/app` must
    // not print as the Docker Hub repository `registry/app`; found by fuzzing).
    let reads_as_host = name.contains('.') || name == "localhost" || name.starts_with('[');
    Ok(match port {
        None => name,
        Some(443) if reads_as_host => name,
        Some(p) => format!("{name}:{p}"),
    })
}

fn parse_registry(input: &str) -> Result<RegistryRef, ReferenceError> {
    let invalid = |part, value: &str| ReferenceError::Invalid {
        reference: input.to_owned(),
        part,
        value: value.chars().take(80).collect(),
    };
    let (name, digest) = split_digest(input, input)?;
    // A tag is a `:` after the last `/` (a `:` before it belongs to a host's port).
    let last_slash = name.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match name[last_slash..].rfind(':') {
        Some(i) => {
            let (n, t) = name.split_at(last_slash + i);
            let t = &t[1..];
            if !valid_tag(t) {
                return Err(invalid("tag", t));
            }
            (n.to_owned(), Some(t.to_owned()))
        }
        None => (name, None),
    };
    let (registry, repository) = match name.split_once('/') {
        Some((first, rest))
            if first.contains('.')
                || first.contains(':')
                || first.starts_with('[')
                || first == "localhost" =>
        {
            // `OCI:5000/app` would print as `oci:5000/app`, a local layout: one spelling, one
            // meaning, so a host that reads as the layout scheme is refused (found by fuzzing).
            if first.to_ascii_lowercase().starts_with("oci:") {
                return Err(invalid("registry host", first));
            }
            match canonical_host(first) {
                Ok(host) => (host, rest.to_owned()),
                Err(_) => return Err(invalid("registry host", first)),
            }
        }
        _ => (DOCKER_HUB.to_owned(), name.clone()),
    };
    let repository = if registry == DOCKER_HUB && !repository.contains('/') {
        format!("library/{repository}")
    } else {
        repository
    };
    if repository.len() > MAX_REPOSITORY_LEN || !repository.split('/').all(valid_component) {
        return Err(invalid("repository", &repository));
    }
    Ok(RegistryRef {
        registry,
        repository,
        tag: if digest.is_none() && tag.is_none() {
            Some("latest".to_owned())
        } else {
            tag
        },
        digest,
    })
}

fn parse_layout(input: &str, rest: &str) -> Result<LayoutRef, ReferenceError> {
    let invalid = |part, value: &str| ReferenceError::Invalid {
        reference: input.to_owned(),
        part,
        value: value.chars().take(80).collect(),
    };
    let (path, digest) = split_digest(input, rest)?;
    let (path, tag) = match path.rsplit_once(':') {
        Some((p, t)) if !t.contains('/') => {
            if !valid_tag(t) {
                return Err(invalid("tag", t));
            }
            (p.to_owned(), Some(t.to_owned()))
        }
        _ => (path, None),
    };
    let path = path.trim_end_matches('/');
    if path.is_empty() {
        return Err(invalid("path", path));
    }
    if path.chars().any(char::is_control) {
        return Err(invalid("path", path));
    }
    // `./a`, `././a` and `a` are one layout (found by fuzzing: printing must round-trip).
    let mut path = path;
    while let Some(rest) = path.strip_prefix("./") {
        path = rest;
    }
    if path.is_empty() {
        return Err(invalid("path", path));
    }
    Ok(LayoutRef {
        path: PathBuf::from(path),
        tag: if digest.is_none() && tag.is_none() {
            Some("latest".to_owned())
        } else {
            tag
        },
        digest,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn reg(s: &str) -> RegistryRef {
        match ImageRef::parse(s).unwrap() {
            ImageRef::Registry(r) => r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn docker_hub_short_names_are_normalised() {
        let r = reg("nginx");
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str()),
            ("docker.io", "library/nginx")
        );
        assert_eq!(r.tag.as_deref(), Some("latest"));
        assert_eq!(reg("acme/app:1.0").repository, "acme/app");
        assert_eq!(reg("index.docker.io/acme/app").registry, "docker.io");
    }

    #[test]
    fn host_port_tag_and_digest() {
        let r = reg(&format!("127.0.0.1:5000/a/b:v1@{D}"));
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository, "a/b");
        assert_eq!(r.tag.as_deref(), Some("v1"));
        assert_eq!(r.digest.as_ref().map(Digest::as_str), Some(D));
        let r = reg(&format!("localhost:5000/a@{D}"));
        assert_eq!(r.tag, None);
        let r = reg("[::1]:5000/a:v");
        assert_eq!(r.registry, "[::1]:5000");
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "UPPER/case",
            "host.io/a//b",
            "host.io/a:bad/tag",
            "host.io/a@sha256:../../x",
            "host.io/a@sha256:ABC",
            "host.io:99999/a",
            "host.io/a:",
            "host.io/-a",
            "host.io/a?b",
        ] {
            assert!(ImageRef::parse(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(ImageRef::parse(&"a".repeat(2000)).is_err());
    }

    #[test]
    fn layouts() {
        let ImageRef::Layout(l) = ImageRef::parse("oci:./examples/demo:signed").unwrap() else {
            panic!()
        };
        assert_eq!(l.path, PathBuf::from("examples/demo"));
        assert_eq!(l.tag.as_deref(), Some("signed"));
        let r = ImageRef::parse(&format!("oci:/tmp/x@{D}")).unwrap();
        assert_eq!(r.digest().map(Digest::as_str), Some(D));
        assert_eq!(r.policy_subject(), "oci:/tmp/x");
        assert!(ImageRef::parse("oci:").is_err());
        assert_eq!(
            ImageRef::parse("oci:././x").unwrap(),
            ImageRef::parse("oci:x").unwrap()
        );
        assert!(ImageRef::parse("oci:a\u{0}b").is_err());
        // A registry host spelled like the layout scheme would print as a layout reference.
        assert!(ImageRef::parse("oCi:6/2").is_err());
        assert!(ImageRef::parse("OCI:5000/app:v1").is_err());
    }

    #[test]
    fn hosts_have_one_spelling() {
        for spelling in [
            "LOCALHOST:5000/prod/app",
            "localhost:5000/prod/app",
            "LocalHost:5000/prod/app:v1",
        ] {
            assert_eq!(reg(spelling).registry, "localhost:5000", "{spelling}");
        }
        assert_eq!(reg("GHCR.io:443/acme/app").registry, "ghcr.io");
        assert_eq!(
            ImageRef::parse("ghcr.io:443/acme/app")
                .unwrap()
                .policy_subject(),
            "ghcr.io/acme/app"
        );
        let hub = reg("registry-1.docker.io:443/nginx");
        assert_eq!(
            (hub.registry.as_str(), hub.repository.as_str()),
            ("docker.io", "library/nginx")
        );
        assert_eq!(reg("Index.Docker.IO/nginx").repository, "library/nginx");
        assert_eq!(reg("ghcr.io:8443/a").registry, "ghcr.io:8443");
        // Found by fuzzing: without its port, `registry` would read as a Docker Hub namespace.
        let odd = ImageRef::parse("registry:443/1.1.1").unwrap();
        assert_eq!(ImageRef::parse(&odd.to_string()).unwrap(), odd);
        assert!(ImageRef::parse("1:443/1.1.1").is_err());
    }

    #[test]
    fn ports_and_ip_literals_have_one_spelling() {
        for (spelling, host) in [
            ("localhost:05000/app", "localhost:5000"),
            ("localhost:0005000/app", "localhost:5000"),
            ("registry.example.com:0443/app", "registry.example.com"),
            ("registry.example.com:00443/app", "registry.example.com"),
            ("[::1]:5000/app", "[::1]:5000"),
            ("[0::1]:5000/app", "[::1]:5000"),
            ("[0:0:0:0:0:0:0:1]:05000/app", "[::1]:5000"),
            ("[2001:DB8::1]/app", "[2001:db8::1]"),
            ("[2001:db8:0:0:0:0:0:1]:443/app", "[2001:db8::1]"),
            ("127.0.0.1:5000/app", "127.0.0.1:5000"),
            ("[::ffff:127.0.0.1]:5000/app", "127.0.0.1:5000"),
            ("[::FFFF:7f00:1]:05000/app", "127.0.0.1:5000"),
        ] {
            assert_eq!(reg(spelling).registry, host, "{spelling}");
        }
        for refused in [
            "localhost:0/app",
            "localhost:65536/app",
            "localhost:+5000/app",
            "localhost:5000x/app",
            "127.1:5000/app",
            "127.000.000.001:5000/app",
            "0x7f.0.0.1:5000/app",
            "2130706433:5000/app",
            "[fe80::1%eth0]:5000/app",
            "[::1/app",
            "[::g]/app",
        ] {
            assert!(ImageRef::parse(refused).is_err(), "{refused}");
        }
    }

    #[test]
    fn display_round_trips() {
        let s = format!("ghcr.io/acme/app:v1@{D}");
        assert_eq!(ImageRef::parse(&s).unwrap().to_string(), s);
    }
}
