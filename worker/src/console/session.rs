//! Who is looking: the console follows the API's access rule
//! (`ApiAccess`). A request shows a bearer token, or a session cookie set by
//! the sign-in form; loopback without a token needs neither.
//!
//! The cookie holds no secret: `<scope>.<expires>.<mac>`, the MAC keyed by
//! the token that signed in, so changing `WORKER_API_TOKEN` (or a read
//! token) ends its sessions, and any replica can check it. HttpOnly (no
//! script reads it), SameSite=Strict (no other site sends it), Secure
//! behind HTTPS. Every form that changes something carries a CSRF token
//! derived from the session; a request authorised by a bearer header needs
//! none (a browser never adds that header on its own).

use actix_web::cookie::{time::Duration as CookieAge, Cookie, SameSite};
use actix_web::dev::Payload;
use actix_web::{web, FromRequest, HttpRequest, HttpResponse};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sha2::Sha256;
use std::future::{ready, Ready};
use std::sync::OnceLock;
use subtle::ConstantTimeEq;

use super::error::ConsoleError;
use super::layout;
use crate::http::{bearer_token, ApiAccess, Scope};

const COOKIE: &str = "console_session";
/// A working day: a forgotten browser does not stay signed in for long.
const SESSION_HOURS: i64 = 12;

/// The person (or script) looking at a console page, and what they may do.
pub struct Viewer {
    pub scope: Scope,
    /// The CSRF token this viewer's forms carry; `None` when authorised by
    /// a bearer header (no form can be forged for it).
    csrf: Option<String>,
    /// Signed in through the form (so the page offers to sign out).
    pub signed_in: bool,
}

impl Viewer {
    pub fn may_change(&self) -> bool {
        self.scope == Scope::Write
    }

    /// The hidden field every changing form carries.
    pub fn csrf_token(&self) -> &str {
        self.csrf.as_deref().unwrap_or("")
    }

    /// A change is allowed: the scope allows it and the form is this
    /// viewer's own.
    pub fn check_change(&self, presented_csrf: &str) -> Result<(), ConsoleError> {
        if !self.may_change() {
            return Err(ConsoleError::ReadOnly);
        }
        match &self.csrf {
            None => Ok(()),
            Some(expected) if bool::from(expected.as_bytes().ct_eq(presented_csrf.as_bytes())) => {
                Ok(())
            }
            Some(_) => Err(ConsoleError::Forged),
        }
    }
}

impl FromRequest for Viewer {
    type Error = ConsoleError;
    type Future = Ready<Result<Self, ConsoleError>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(identify(request))
    }
}

fn identify(request: &HttpRequest) -> Result<Viewer, ConsoleError> {
    let access = request
        .app_data::<web::Data<ApiAccess>>()
        .ok_or(ConsoleError::Refused)?;
    match access.get_ref() {
        ApiAccess::Refused => Err(ConsoleError::Refused),
        ApiAccess::LocalOnly => Ok(Viewer {
            scope: Scope::Write,
            csrf: Some(mac_hex(local_key(), b"csrf|local")),
            signed_in: false,
        }),
        ApiAccess::Tokens { .. } => {
            if bearer_token(request).is_some() {
                return access
                    .scope_of_request(request)
                    .map(|scope| Viewer {
                        scope,
                        csrf: None,
                        signed_in: false,
                    })
                    .ok_or_else(|| ConsoleError::SignInNeeded(next_of(request)));
            }
            let cookie = request
                .cookie(COOKIE)
                .ok_or_else(|| ConsoleError::SignInNeeded(next_of(request)))?;
            let (scope, token) = check_session(access, cookie.value())
                .ok_or_else(|| ConsoleError::SignInNeeded(next_of(request)))?;
            Ok(Viewer {
                scope,
                csrf: Some(mac_hex(
                    token.expose_secret().as_bytes(),
                    format!("csrf|{}", cookie.value()).as_bytes(),
                )),
                signed_in: true,
            })
        }
    }
}

/// The page to come back to after signing in.
fn next_of(request: &HttpRequest) -> String {
    let uri = request.uri();
    let path_and_query = uri.path_and_query().map_or("/console/", |p| p.as_str());
    if request.method() == actix_web::http::Method::GET {
        path_and_query.to_owned()
    } else {
        "/console/".to_owned()
    }
}

/// The scope and token of a valid, unexpired session cookie.
fn check_session<'a>(access: &'a ApiAccess, value: &str) -> Option<(Scope, &'a SecretString)> {
    let mut parts = value.splitn(3, '.');
    let scope = match parts.next()? {
        "full" => Scope::Write,
        "read" => Scope::Read,
        _ => return None,
    };
    let expires: i64 = parts.next()?.parse().ok()?;
    let presented = URL_SAFE_NO_PAD.decode(parts.next()?).ok()?;
    if expires <= chrono::Utc::now().timestamp() {
        return None;
    }
    access
        .tokens_of(scope)
        .find(|token| {
            let expected = session_mac(token, scope, expires);
            bool::from(expected.as_slice().ct_eq(&presented))
        })
        .map(|token| (scope, token))
}

fn scope_name(scope: Scope) -> &'static str {
    match scope {
        Scope::Write => "full",
        Scope::Read => "read",
    }
}

fn session_mac(token: &SecretString, scope: Scope, expires: i64) -> Vec<u8> {
    mac(
        token.expose_secret().as_bytes(),
        format!("console session|{}|{expires}", scope_name(scope)).as_bytes(),
    )
}

fn mac(key: &[u8], message: &[u8]) -> Vec<u8> {
    // HMAC takes a key of any length: `new_from_slice` cannot fail.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return Vec::new();
    };
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

fn mac_hex(key: &[u8], message: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(mac(key, message))
}

/// Loopback without a token: a key of this process's own for the CSRF
/// token (a page on another site cannot read it from ours).
fn local_key() -> &'static [u8] {
    static KEY: OnceLock<Vec<u8>> = OnceLock::new();
    KEY.get_or_init(|| {
        let mut key = uuid::Uuid::new_v4().as_bytes().to_vec();
        key.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
        key
    })
}

#[derive(Deserialize)]
pub(super) struct SignInQuery {
    next: Option<String>,
}

/// Only a console page: never a redirect to another site.
fn safe_next(next: Option<&str>) -> String {
    next.filter(|next| {
        next.starts_with("/console/") && !next.contains("//") && !next.contains('\\')
    })
    .unwrap_or("/console/")
    .to_owned()
}

pub(super) async fn sign_in_page(
    request: HttpRequest,
    query: web::Query<SignInQuery>,
) -> HttpResponse {
    let next = safe_next(query.next.as_deref());
    if let Ok(viewer) = identify(&request) {
        if viewer.signed_in || bearer_token(&request).is_some() {
            return see_other(&next);
        }
    }
    layout::html_response(
        actix_web::http::StatusCode::OK,
        layout::sign_in(&next, None),
    )
}

#[derive(Deserialize)]
pub(super) struct SignInForm {
    token: String,
    next: Option<String>,
}

pub(super) async fn sign_in(
    request: HttpRequest,
    access: web::Data<ApiAccess>,
    form: web::Form<SignInForm>,
) -> HttpResponse {
    let next = safe_next(form.next.as_deref());
    let scope = match access.get_ref() {
        ApiAccess::Tokens { .. } => access.scope_of(form.token.trim()),
        // No token to sign in with: the console is open on loopback, or
        // closed.
        ApiAccess::LocalOnly => return see_other(&next),
        ApiAccess::Refused => return ConsoleError::Refused.page(),
    };
    let Some(scope) = scope else {
        return layout::html_response(
            actix_web::http::StatusCode::UNAUTHORIZED,
            layout::sign_in(&next, Some("That token is not one this worker accepts.")),
        );
    };
    let expires = chrono::Utc::now().timestamp() + SESSION_HOURS * 3600;
    let token: SecretString = form.token.trim().to_owned().into();
    let value = format!(
        "{}.{expires}.{}",
        scope_name(scope),
        URL_SAFE_NO_PAD.encode(session_mac(&token, scope, expires))
    );
    let cookie = Cookie::build(COOKIE, value)
        .path("/console")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(request.connection_info().scheme() == "https")
        .max_age(CookieAge::hours(SESSION_HOURS))
        .finish();
    HttpResponse::SeeOther()
        .insert_header(("Location", next))
        .insert_header(("Cache-Control", "no-store"))
        .cookie(cookie)
        .finish()
}

#[derive(Deserialize)]
pub(super) struct SignOutForm {
    csrf: String,
}

pub(super) async fn sign_out(
    viewer: Viewer,
    form: web::Form<SignOutForm>,
) -> Result<HttpResponse, ConsoleError> {
    if viewer
        .csrf
        .as_deref()
        .is_some_and(|expected| !bool::from(expected.as_bytes().ct_eq(form.csrf.as_bytes())))
    {
        return Err(ConsoleError::Forged);
    }
    let mut gone = Cookie::build(COOKIE, "").path("/console").finish();
    gone.make_removal();
    Ok(HttpResponse::SeeOther()
        .insert_header(("Location", "/console/sign-in"))
        .cookie(gone)
        .finish())
}

pub(super) fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header(("Location", location.to_owned()))
        .finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> ApiAccess {
        ApiAccess::new(
            Some("full-secret".to_owned().into()),
            vec!["read-secret".to_owned().into()],
            "127.0.0.1:8081".parse().unwrap(),
        )
    }

    fn cookie_for(token: &str, scope: Scope, expires: i64) -> String {
        let token: SecretString = token.to_owned().into();
        format!(
            "{}.{expires}.{}",
            scope_name(scope),
            URL_SAFE_NO_PAD.encode(session_mac(&token, scope, expires))
        )
    }

    #[test]
    fn a_session_is_valid_only_as_signed_and_until_it_expires() {
        let access = tokens();
        let later = chrono::Utc::now().timestamp() + 60;
        let full = cookie_for("full-secret", Scope::Write, later);
        assert_eq!(
            check_session(&access, &full).map(|s| s.0),
            Some(Scope::Write)
        );
        let read = cookie_for("read-secret", Scope::Read, later);
        assert_eq!(
            check_session(&access, &read).map(|s| s.0),
            Some(Scope::Read)
        );
        // A read token's MAC does not make a full session.
        let forged = read.replacen("read", "full", 1);
        assert!(check_session(&access, &forged).is_none());
        let extended = full.replacen(&later.to_string(), &(later + 3600).to_string(), 1);
        assert!(check_session(&access, &extended).is_none());
        let expired = cookie_for("full-secret", Scope::Write, later - 120);
        assert!(check_session(&access, &expired).is_none());
        let other_token = cookie_for("another", Scope::Write, later);
        assert!(check_session(&access, &other_token).is_none());
        for junk in [
            "",
            "full",
            "full.x.y",
            "admin.1.AAAA",
            "full.99999999999.%%%",
        ] {
            assert!(check_session(&access, junk).is_none(), "{junk}");
        }
    }

    #[test]
    fn sign_in_only_returns_to_console_pages() {
        assert_eq!(
            safe_next(Some("/console/messages/SM1")),
            "/console/messages/SM1"
        );
        for away in [
            "https://evil.example/",
            "//evil.example/",
            "/console/\\evil",
            "/metrics",
            "",
        ] {
            assert_eq!(safe_next(Some(away)), "/console/", "{away}");
        }
        assert_eq!(safe_next(None), "/console/");
    }
}
