//! What every registry request shares: origins compared for credentials, transport errors and
//! statuses read as fetch failures, bodies read under a cap whatever their length claims.

use reqwest::{StatusCode, Url};

use super::Answer;
use crate::evidence::FetchError;

/// Same scheme, host and port (the default port of the scheme counts as given).
pub(super) fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

/// What a message says to do about a plain-HTTP registry (the CLI's flags say it their way).
pub const INSECURE_HINT: &str = "list its host under registries with insecure: true";

pub(super) fn unavailable(what: &str, e: &reqwest::Error) -> FetchError {
    let mut detail = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        detail = format!("{detail}: {s}");
        source = s.source();
    }
    // rustls reading an HTTP answer as a TLS record: a plain-HTTP registry that is not listed
    // `insecure`. Retrying cannot help, and the fix is a setting.
    if detail.contains("corrupt message") || detail.contains("InvalidContentType") {
        return FetchError::Protocol {
            what: what.to_owned(),
            detail: format!(
                "the registry answered plain HTTP where umpire expected HTTPS; if it is meant to \
                 serve plain HTTP, {INSECURE_HINT}"
            ),
        };
    }
    // A certificate the client does not trust: retrying cannot help either, and the fix is the
    // registry's certificate or umpire's setting for its CA.
    if detail.contains("invalid peer certificate") {
        return FetchError::Protocol {
            what: what.to_owned(),
            detail: format!(
                "{detail}; if the registry's certificate is issued by a private CA, {TLS_CA_HINT}"
            ),
        };
    }
    FetchError::Unavailable {
        what: what.to_owned(),
        detail,
    }
}

/// What a message says to do about a registry whose certificate a private CA issued.
pub const TLS_CA_HINT: &str = "name that CA's PEM under its host's registries entry as tls_ca";

pub(super) fn check_status(response: Answer, what: &str) -> Result<Answer, FetchError> {
    let status = response.status();
    let what = what.to_owned();
    match status {
        s if s.is_success() => Ok(response),
        StatusCode::NOT_FOUND => Err(FetchError::NotFound { what }),
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(FetchError::AccessDenied {
            what,
            status: status.as_u16(),
        }),
        StatusCode::TOO_MANY_REQUESTS | StatusCode::REQUEST_TIMEOUT => {
            Err(FetchError::Unavailable {
                what,
                detail: format!("registry answered HTTP {status}"),
            })
        }
        s if s.is_server_error() => Err(FetchError::Unavailable {
            what,
            detail: format!("registry answered HTTP {status}"),
        }),
        s => Err(FetchError::Protocol {
            what,
            detail: format!("registry answered HTTP {s}"),
        }),
    }
}

/// Reads a body, refusing it as soon as it would pass `max` bytes (whatever Content-Length says).
pub(super) async fn read_bounded(
    mut response: Answer,
    max: u64,
    what: &str,
) -> Result<Vec<u8>, FetchError> {
    let limit = || FetchError::LimitExceeded {
        what: what.to_owned(),
        limit: max,
        unit: "bytes",
    };
    if response.content_length().is_some_and(|n| n > max) {
        return Err(limit());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| unavailable(what, &e))? {
        if body.len() as u64 + chunk.len() as u64 > max {
            return Err(limit());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
