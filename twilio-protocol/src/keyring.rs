//! Which secret and algorithm a callback must be signed with.
//!
//! - A callback carrying `X-Twilio-Webhooks-Signature-Settings` with a
//!   `key=<id>` is signed with that SharedKey's secret, under the header's
//!   `algorithm` (HMAC_SHA1 when it names none, as twilio-python reads it).
//! - Otherwise it is signed with the auth token of the `AccountSid` it
//!   carries: a subaccount's own token when one is configured for it, else
//!   the main token(s), which serve the main account and every account not
//!   listed.
//!
//! Every entry holds a list of secrets, so each rotates on its own.

use std::collections::HashMap;

use crate::signature::{Algorithm, AuthToken, SignatureVerifier, UnsupportedAlgorithm};

/// The header Twilio adds to callbacks signed with a SharedKey.
pub const SIGNATURE_SETTINGS_HEADER: &str = "X-Twilio-Webhooks-Signature-Settings";

/// Why no secret could be chosen for a callback.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("no auth token configured for account {0:?} and no TWILIO_AUTH_TOKEN")]
    UnknownAccount(Option<String>),
    #[error("signing key {0:?} is not in TWILIO_SIGNING_KEYS")]
    UnknownKey(String),
    #[error(transparent)]
    UnsupportedAlgorithm(#[from] UnsupportedAlgorithm),
}

/// Why a `TWILIO_ACCOUNT_TOKENS` or `TWILIO_SIGNING_KEYS` value cannot be
/// read. Entries are counted from 1; no variant holds a secret.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SecretMapError {
    #[error("entry {entry} has no '=' (expected ID=secret)")]
    NoEquals { entry: usize },
    #[error("entry {entry} has no id before '='")]
    NoId { entry: usize },
    #[error("entry {id:?} has no secret after '='")]
    NoSecret { id: String },
}

/// Reads `ID=secret1|secret2,ID2=secret3` (`TWILIO_ACCOUNT_TOKENS`,
/// `TWILIO_SIGNING_KEYS`): one entry per id, newest secret first. An id
/// given twice gets the secrets of both entries.
pub fn read_secret_map(raw: &str) -> Result<Vec<(String, Vec<AuthToken>)>, SecretMapError> {
    let mut entries: Vec<(String, Vec<AuthToken>)> = Vec::new();
    for (index, entry) in raw.split(',').enumerate() {
        let entry = entry.trim();
        if entry.is_empty() {
            continue;
        }
        let Some((id, secrets)) = entry.split_once('=') else {
            return Err(SecretMapError::NoEquals { entry: index + 1 });
        };
        let id = id.trim();
        let secrets: Vec<AuthToken> = secrets
            .split('|')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(AuthToken::new)
            .collect();
        if id.is_empty() || id.contains(char::is_whitespace) {
            return Err(SecretMapError::NoId { entry: index + 1 });
        }
        if secrets.is_empty() {
            return Err(SecretMapError::NoSecret { id: id.to_owned() });
        }
        match entries.iter_mut().find(|(known, _)| known == id) {
            Some((_, known)) => known.extend(secrets),
            None => entries.push((id.to_owned(), secrets)),
        }
    }
    Ok(entries)
}

/// What `X-Twilio-Webhooks-Signature-Settings: key=<id>,algorithm=<name>` says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignatureSettings {
    pub key: Option<String>,
    pub algorithm: Result<Algorithm, UnsupportedAlgorithm>,
}

impl SignatureSettings {
    /// Reads the header as twilio-python does: comma-separated `name=value`
    /// parts, trimmed; the first non-empty value of each name counts; no
    /// `algorithm` means HMAC_SHA1.
    pub fn parse(header: &str) -> Self {
        let value_of = |wanted: &str| {
            header.split(',').find_map(|part| {
                let (name, value) = part.split_once('=')?;
                let value = value.trim();
                (name.trim() == wanted && !value.is_empty()).then_some(value)
            })
        };
        let algorithm = match value_of("algorithm") {
            None => Ok(Algorithm::HmacSha1),
            Some(name) => Algorithm::parse(name),
        };
        Self {
            key: value_of("key").map(str::to_owned),
            algorithm,
        }
    }
}

/// The secrets to check a callback against, and the algorithm.
#[derive(Clone, Copy, Debug)]
pub struct Selected<'a> {
    pub verifier: &'a SignatureVerifier,
    pub algorithm: Algorithm,
}

/// Every secret ingest knows: main tokens, per-account tokens, SharedKeys.
#[derive(Clone, Debug, Default)]
pub struct Keyring {
    main: Option<SignatureVerifier>,
    accounts: HashMap<String, SignatureVerifier>,
    shared_keys: HashMap<String, SignatureVerifier>,
}

impl Keyring {
    /// `main`: the tokens for the main account and any account not listed
    /// (none: only listed accounts and SharedKeys verify).
    pub fn new(main: Vec<AuthToken>) -> Self {
        Self {
            main: (!main.is_empty()).then(|| SignatureVerifier::new(main)),
            ..Self::default()
        }
    }

    /// Adds an account's own tokens (newest first, older ones while rotating).
    pub fn with_account(mut self, account_sid: impl Into<String>, tokens: Vec<AuthToken>) -> Self {
        self.accounts
            .insert(account_sid.into(), SignatureVerifier::new(tokens));
        self
    }

    /// Adds a SharedKey's secret(s).
    pub fn with_shared_key(mut self, key_id: impl Into<String>, secrets: Vec<AuthToken>) -> Self {
        self.shared_keys
            .insert(key_id.into(), SignatureVerifier::new(secrets));
        self
    }

    /// Chooses the secrets for a callback from its `AccountSid` (if any) and
    /// its signature settings header (if any).
    pub fn select(
        &self,
        account_sid: Option<&str>,
        settings_header: Option<&str>,
    ) -> Result<Selected<'_>, KeyError> {
        let settings = settings_header.map(SignatureSettings::parse);
        let algorithm = match settings.as_ref().map(|s| s.algorithm.clone()) {
            None => Algorithm::HmacSha1,
            Some(algorithm) => algorithm?,
        };
        let verifier = match settings.and_then(|s| s.key) {
            Some(key) => self
                .shared_keys
                .get(&key)
                .ok_or(KeyError::UnknownKey(key))?,
            None => account_sid
                .and_then(|sid| self.accounts.get(sid))
                .or(self.main.as_ref())
                .ok_or_else(|| KeyError::UnknownAccount(account_sid.map(str::to_owned)))?,
        };
        Ok(Selected {
            verifier,
            algorithm,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::form::FormParams;
    use crate::signature::compute_signature_with;

    fn tokens(secrets: &[&str]) -> Vec<AuthToken> {
        secrets.iter().map(|s| AuthToken::new(*s)).collect()
    }

    fn keyring() -> Keyring {
        Keyring::new(tokens(&["main"]))
            .with_account("ACsub", tokens(&["sub-new", "sub-old"]))
            .with_shared_key("webhooks_sharedkey_1", tokens(&["shared-secret"]))
    }

    /// Signs TV4-like params at a fixed URL and asks the keyring's choice to verify.
    fn accepts(
        keyring: &Keyring,
        account: Option<&str>,
        header: Option<&str>,
        secret: &str,
        algorithm: Algorithm,
    ) -> Result<bool, KeyError> {
        let url = "https://example.com/twilio/status";
        let params = FormParams::from_pairs(vec![("MessageSid".into(), "SM1".into())]);
        let signature = compute_signature_with(algorithm, &AuthToken::new(secret), url, &params);
        let selected = keyring.select(account, header)?;
        Ok(selected
            .verifier
            .verify_form_with(selected.algorithm, url, &params, &signature))
    }

    #[test]
    fn secret_maps_parse_and_name_the_bad_entry() {
        let map = read_secret_map(" ACa=t1|t2 , ACb = t3=x ,ACa=t4,").unwrap();
        let shape: Vec<(String, usize)> = map.iter().map(|(id, s)| (id.clone(), s.len())).collect();
        assert_eq!(shape, [("ACa".to_owned(), 3), ("ACb".to_owned(), 1)]);
        assert_eq!(read_secret_map("").unwrap().len(), 0);
        let refusals = [
            (
                "ACa",
                SecretMapError::NoEquals { entry: 1 },
                "entry 1 has no '=' (expected ID=secret)",
            ),
            (
                "ACa=x,=t",
                SecretMapError::NoId { entry: 2 },
                "entry 2 has no id before '='",
            ),
            (
                "ACa= | ",
                SecretMapError::NoSecret { id: "ACa".into() },
                "entry \"ACa\" has no secret after '='",
            ),
        ];
        for (raw, error, text) in refusals {
            assert_eq!(read_secret_map(raw).unwrap_err(), error);
            assert_eq!(read_secret_map(raw).unwrap_err().to_string(), text);
        }
    }

    #[test]
    fn settings_are_read_as_the_sdk_reads_them() {
        let s = SignatureSettings::parse(" key = k1 , algorithm = hmac_sha256 ");
        assert_eq!(s.key.as_deref(), Some("k1"));
        assert_eq!(s.algorithm, Ok(Algorithm::HmacSha256));
        let s = SignatureSettings::parse("key=k1");
        assert_eq!(s.algorithm, Ok(Algorithm::HmacSha1));
        let s = SignatureSettings::parse("algorithm=,algorithm=HMAC_SHA256,key=");
        assert_eq!((s.key, s.algorithm), (None, Ok(Algorithm::HmacSha256)));
        let s = SignatureSettings::parse("key=k1,algorithm=HMAC_SHA512");
        assert_eq!(
            s.algorithm,
            Err(UnsupportedAlgorithm("HMAC_SHA512".to_owned()))
        );
        assert_eq!(
            SignatureSettings::parse(""),
            SignatureSettings {
                key: None,
                algorithm: Ok(Algorithm::HmacSha1)
            }
        );
    }

    #[test]
    fn an_account_uses_its_own_tokens_and_the_rest_use_the_main_ones() {
        let k = keyring();
        let sha1 = Algorithm::HmacSha1;
        assert_eq!(accepts(&k, Some("ACsub"), None, "sub-new", sha1), Ok(true));
        assert_eq!(accepts(&k, Some("ACsub"), None, "sub-old", sha1), Ok(true));
        assert_eq!(accepts(&k, Some("ACsub"), None, "main", sha1), Ok(false));
        assert_eq!(accepts(&k, Some("ACother"), None, "main", sha1), Ok(true));
        assert_eq!(
            accepts(&k, Some("ACother"), None, "sub-new", sha1),
            Ok(false)
        );
        assert_eq!(accepts(&k, None, None, "main", sha1), Ok(true));
    }

    #[test]
    fn without_main_tokens_an_unlisted_account_is_unknown() {
        let k = Keyring::new(Vec::new()).with_account("ACsub", tokens(&["sub"]));
        let sha1 = Algorithm::HmacSha1;
        assert_eq!(accepts(&k, Some("ACsub"), None, "sub", sha1), Ok(true));
        assert_eq!(
            accepts(&k, Some("ACother"), None, "sub", sha1),
            Err(KeyError::UnknownAccount(Some("ACother".into())))
        );
        assert_eq!(
            accepts(&k, None, None, "sub", sha1),
            Err(KeyError::UnknownAccount(None))
        );
    }

    #[test]
    fn a_shared_key_signs_with_its_secret_and_the_named_algorithm() {
        let k = keyring();
        let key = "webhooks_sharedkey_1";
        let sha256 = Algorithm::HmacSha256;
        let sha1 = Algorithm::HmacSha1;
        let header = format!("key={key},algorithm=HMAC_SHA256");
        assert_eq!(
            accepts(&k, Some("ACsub"), Some(&header), "shared-secret", sha256),
            Ok(true)
        );
        // The algorithm is the header's: a SHA-1 signature does not pass as SHA-256.
        assert_eq!(
            accepts(&k, Some("ACsub"), Some(&header), "shared-secret", sha1),
            Ok(false)
        );
        // The key replaces the account's token.
        assert_eq!(
            accepts(&k, Some("ACsub"), Some(&header), "sub-new", sha256),
            Ok(false)
        );
        let sha1_header = format!("key={key},algorithm=HMAC_SHA1");
        assert_eq!(
            accepts(&k, None, Some(&sha1_header), "shared-secret", sha1),
            Ok(true)
        );
        assert_eq!(
            accepts(
                &k,
                None,
                Some("key=nope,algorithm=HMAC_SHA256"),
                "x",
                sha256
            ),
            Err(KeyError::UnknownKey("nope".into()))
        );
        assert_eq!(
            accepts(
                &k,
                None,
                Some(&format!("key={key},algorithm=RSA")),
                "x",
                sha256
            ),
            Err(KeyError::UnsupportedAlgorithm(UnsupportedAlgorithm(
                "RSA".into()
            )))
        );
        // A header naming no key keeps the account's token, under its algorithm.
        assert_eq!(
            accepts(
                &k,
                Some("ACsub"),
                Some("algorithm=HMAC_SHA256"),
                "sub-new",
                sha256
            ),
            Ok(true)
        );
        assert_eq!(
            accepts(&k, Some("ACsub"), Some(""), "sub-new", sha1),
            Ok(true)
        );
    }
}
