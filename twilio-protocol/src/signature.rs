//! `X-Twilio-Signature` computation and verification, equal to Twilio's SDKs.
//!
//! The signed string is the full URL followed by every parameter name and
//! value (names byte-sorted, each name's distinct values sorted), signed with
//! HMAC-SHA1 under the auth token and base64-encoded. A callback signed with
//! a SharedKey signs the same string with the key's secret, under HMAC-SHA1
//! or HMAC-SHA256 (see `keyring`). The SDKs accept the
//! signature on two URL variants (default port added, any port removed); so
//! do we. JSON bodies are signed on the URL alone and bound to the body by a
//! `bodySHA256` query parameter, which is checked too.

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use std::fmt;
use subtle::ConstantTimeEq;

use crate::form::FormParams;

/// One secret that signs callbacks: an account's auth token or a SharedKey's
/// secret. Its `Debug` never prints it.
#[derive(Clone)]
pub struct AuthToken(String);

impl AuthToken {
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }

    /// The secret itself, for a caller that must send it (API credentials).
    pub fn expose_secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AuthToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AuthToken(***)")
    }
}

/// The HMAC a signature is made with: SHA-1 for auth tokens (the default),
/// SHA-1 or SHA-256 for a SharedKey, as its settings header says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    HmacSha1,
    HmacSha256,
}

/// A signature settings header named an algorithm Twilio does not sign with.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unsupported signature algorithm {0:?}")]
pub struct UnsupportedAlgorithm(pub String);

impl Algorithm {
    /// `HMAC_SHA1` or `HMAC_SHA256`, in any case (the SDK upper-cases it).
    pub fn parse(name: &str) -> Result<Self, UnsupportedAlgorithm> {
        if name.eq_ignore_ascii_case("HMAC_SHA1") {
            Ok(Self::HmacSha1)
        } else if name.eq_ignore_ascii_case("HMAC_SHA256") {
            Ok(Self::HmacSha256)
        } else {
            Err(UnsupportedAlgorithm(name.to_owned()))
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::HmacSha1 => "HMAC_SHA1",
            Self::HmacSha256 => "HMAC_SHA256",
        }
    }
}

/// Computes the signature Twilio sends for `url` and form `params` with an
/// auth token (HMAC-SHA1).
pub fn compute_signature(token: &AuthToken, url: &str, params: &FormParams) -> String {
    compute_signature_with(Algorithm::HmacSha1, token, url, params)
}

/// Computes the signature for `url` and `params` with `secret` under `algorithm`.
pub fn compute_signature_with(
    algorithm: Algorithm,
    secret: &AuthToken,
    url: &str,
    params: &FormParams,
) -> String {
    let digest = match algorithm {
        Algorithm::HmacSha1 => hmac_over::<Hmac<Sha1>>(secret, url, params),
        Algorithm::HmacSha256 => hmac_over::<Hmac<Sha256>>(secret, url, params),
    };
    base64::engine::general_purpose::STANDARD.encode(digest)
}

fn hmac_over<M: Mac + KeyInit>(secret: &AuthToken, url: &str, params: &FormParams) -> Vec<u8> {
    let mut mac = match <M as KeyInit>::new_from_slice(secret.0.as_bytes()) {
        Ok(mac) => mac,
        // HMAC accepts keys of any length; this arm is unreachable in practice.
        Err(_) => return Vec::new(),
    };
    mac.update(url.as_bytes());
    write_signed_params(params, |bytes| mac.update(bytes));
    mac.finalize().into_bytes().to_vec()
}

/// Feeds `params` to `sink` exactly as they enter the signed string: names
/// byte-sorted, each distinct value once, no separators. Two bodies that feed
/// the same bytes carry the same signature for a URL, so this is also what
/// identifies a callback (the worker's dedup key): appending `&=`, repeating
/// a pair or moving a name/value boundary yields the same bytes.
pub fn write_signed_params(params: &FormParams, mut sink: impl FnMut(&[u8])) {
    for (name, value) in params.signing_order() {
        sink(name.as_bytes());
        sink(value.as_bytes());
    }
}

/// Lowercase hex SHA-256 of a raw body, as Twilio puts in `bodySHA256`.
pub fn body_sha256_hex(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

/// Verifies signatures against one or more secrets (several during a rotation).
#[derive(Clone, Debug)]
pub struct SignatureVerifier {
    tokens: Vec<AuthToken>,
}

impl SignatureVerifier {
    pub fn new(tokens: Vec<AuthToken>) -> Self {
        Self { tokens }
    }

    /// Form-encoded callback signed with HMAC-SHA1: `url` is the URL Twilio
    /// requested (any fragment is ignored).
    pub fn verify_form(&self, url: &str, params: &FormParams, signature: &str) -> bool {
        self.verify_form_with(Algorithm::HmacSha1, url, params, signature)
    }

    /// JSON callback signed with HMAC-SHA1.
    pub fn verify_json(&self, url: &str, body: &[u8], signature: &str) -> bool {
        self.verify_json_with(Algorithm::HmacSha1, url, body, signature)
    }

    /// Form-encoded callback signed under `algorithm`.
    pub fn verify_form_with(
        &self,
        algorithm: Algorithm,
        url: &str,
        params: &FormParams,
        signature: &str,
    ) -> bool {
        let mut valid = false;
        for candidate in url_variants(url) {
            for token in &self.tokens {
                let expected = compute_signature_with(algorithm, token, &candidate, params);
                // Not short-circuited: every comparison runs, in constant time.
                valid |= constant_time_eq(expected.as_bytes(), signature.as_bytes());
            }
        }
        valid
    }

    /// JSON callback: the URL's `bodySHA256` must equal the body's hash, and
    /// the signature must cover the URL with no parameters.
    pub fn verify_json_with(
        &self,
        algorithm: Algorithm,
        url: &str,
        body: &[u8],
        signature: &str,
    ) -> bool {
        let Some(claimed_hash) = query_parameter(url, "bodySHA256") else {
            return false;
        };
        let actual_hash = body_sha256_hex(body);
        let hash_matches = constant_time_eq(actual_hash.as_bytes(), claimed_hash.as_bytes());
        let signature_matches =
            self.verify_form_with(algorithm, url, &FormParams::default(), signature);
        hash_matches & signature_matches
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// The value of the first query parameter called `name`, percent-decoded.
fn query_parameter(url: &str, name: &str) -> Option<String> {
    let without_fragment = url.split('#').next().unwrap_or(url);
    let (_, query) = without_fragment.split_once('?')?;
    let params = FormParams::parse(query.as_bytes()).ok()?;
    params.get(name).map(str::to_owned)
}

/// The URL parts the port quirk needs: everything before the host, the host,
/// the explicit port if any, and the rest (path and query), fragment dropped.
struct UrlParts<'a> {
    scheme: &'a str,
    host: &'a str,
    port: Option<&'a str>,
    rest: &'a str,
}

fn split_url(url: &str) -> Option<UrlParts<'_>> {
    let url = url.split('#').next().unwrap_or(url);
    let (scheme, after_scheme) = url.split_once("://")?;
    let authority_end = after_scheme.find(['/', '?']).unwrap_or(after_scheme.len());
    let (authority, rest) = after_scheme.split_at(authority_end);
    // Credentials are never part of the signed URL.
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    let (host, port) = if let Some(bracket_end) = host_port.find(']') {
        // IPv6 literal: `[::1]:8080`.
        let (host, after) = host_port.split_at(bracket_end + 1);
        (host, after.strip_prefix(':'))
    } else {
        match host_port.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (host_port, None),
        }
    };
    Some(UrlParts {
        scheme,
        host,
        port,
        rest,
    })
}

/// The two URLs the SDKs try: with the scheme's default port added when none
/// is given, and with any port removed. Falls back to the URL itself when it
/// cannot be split.
pub fn url_variants(url: &str) -> Vec<String> {
    let Some(parts) = split_url(url) else {
        return vec![url.split('#').next().unwrap_or(url).to_owned()];
    };
    let without_port = format!("{}://{}{}", parts.scheme, parts.host, parts.rest);
    let with_port = match (parts.port, default_port(parts.scheme)) {
        (Some(port), _) => format!("{}://{}:{}{}", parts.scheme, parts.host, port, parts.rest),
        (None, Some(port)) => format!("{}://{}:{}{}", parts.scheme, parts.host, port, parts.rest),
        (None, None) => without_port.clone(),
    };
    if with_port == without_port {
        vec![without_port]
    } else {
        vec![with_port, without_port]
    }
}

fn default_port(scheme: &str) -> Option<&'static str> {
    match scheme.to_ascii_lowercase().as_str() {
        "https" => Some("443"),
        "http" => Some("80"),
        _ => None,
    }
}
