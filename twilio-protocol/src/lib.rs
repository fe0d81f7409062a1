//! Twilio's status-callback protocol, as pure logic with no I/O: the
//! `X-Twilio-Signature` check exactly as Twilio's SDKs compute it, form
//! bodies, the callback's fields, message statuses with their precedence,
//! and what Twilio's error codes mean.

pub mod callback;
pub mod error_codes;
pub mod form;
pub mod keyring;
pub mod signature;
pub mod status;
