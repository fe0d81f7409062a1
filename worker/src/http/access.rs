//! Who may use the API: every route but the three probes shows personal
//! data (phone numbers, bodies in reconciled answers) or sends messages, so
//! each one asks for a bearer token when one is configured. A read token
//! (`WORKER_API_READ_TOKENS`) opens the reading routes only, for dashboards
//! and support staff; `WORKER_API_TOKEN` opens everything.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, HttpRequest};
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

use super::error::ApiError;

/// What a route does with the data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Reads messages or statistics.
    Read,
    /// Changes something (sends a message, replays a letter).
    Write,
}

impl Scope {
    /// GET and HEAD read; every other method changes something.
    fn of(request: &HttpRequest) -> Self {
        if request.method() == actix_web::http::Method::GET
            || request.method() == actix_web::http::Method::HEAD
        {
            Self::Read
        } else {
            Self::Write
        }
    }
}

/// The access rule of the API routes.
pub enum ApiAccess {
    /// Bound to loopback with no token: local callers only, all routes.
    LocalOnly,
    /// A bearer token is required: `full` for every route, any of `read`
    /// for the reading ones.
    Tokens {
        full: Option<SecretString>,
        read: Vec<SecretString>,
    },
    /// Bound beyond loopback without a token: every API route refused.
    Refused,
}

impl ApiAccess {
    pub fn new(
        full: Option<SecretString>,
        read: Vec<SecretString>,
        addr: std::net::SocketAddr,
    ) -> Self {
        if full.is_some() || !read.is_empty() {
            Self::Tokens { full, read }
        } else if addr.ip().is_loopback() {
            Self::LocalOnly
        } else {
            Self::Refused
        }
    }

    /// The scope a presented token opens, if any (constant-time compares).
    pub fn scope_of(&self, presented: &str) -> Option<Scope> {
        let Self::Tokens { full, read } = self else {
            return None;
        };
        if full.as_ref().is_some_and(|token| same(token, presented)) {
            Some(Scope::Write)
        } else if read.iter().any(|token| same(token, presented)) {
            Some(Scope::Read)
        } else {
            None
        }
    }

    /// The scope `request`'s bearer token opens, if any.
    pub fn scope_of_request(&self, request: &HttpRequest) -> Option<Scope> {
        self.scope_of(bearer_token(request)?)
    }

    /// The configured tokens that open `scope` exactly (the console keys
    /// its sessions with them).
    pub fn tokens_of(&self, scope: Scope) -> impl Iterator<Item = &SecretString> {
        let tokens: Vec<&SecretString> = match (self, scope) {
            (Self::Tokens { full, .. }, Scope::Write) => full.iter().collect(),
            (Self::Tokens { read, .. }, Scope::Read) => read.iter().collect(),
            _ => Vec::new(),
        };
        tokens.into_iter()
    }

    /// Whether `request` may use a route of `scope`.
    pub fn check(&self, request: &HttpRequest, scope: Scope) -> Result<(), ApiError> {
        match self {
            Self::LocalOnly => Ok(()),
            Self::Refused => Err(ApiError::NoTokenConfigured),
            Self::Tokens { .. } => match (self.scope_of_request(request), scope) {
                (None, _) => Err(ApiError::Unauthorized),
                (Some(Scope::Read), Scope::Write) => Err(ApiError::ReadOnlyToken),
                (Some(_), _) => Ok(()),
            },
        }
    }
}

pub fn bearer_token(request: &HttpRequest) -> Option<&str> {
    let value = request.headers().get("Authorization")?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|token| !token.is_empty())
}

fn same(expected: &SecretString, presented: &str) -> bool {
    bool::from(
        expected
            .expose_secret()
            .as_bytes()
            .ct_eq(presented.as_bytes()),
    )
}

/// Middleware for the API routes: refuses a request its token does not
/// allow before the handler (and the database) sees it.
pub async fn require_token(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let allowed = match request.app_data::<web::Data<ApiAccess>>() {
        Some(access) => access.check(request.request(), Scope::of(request.request())),
        // Without its rule no route may answer: refuse.
        None => Err(ApiError::Unauthorized),
    };
    allowed?;
    next.call(request).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn loopback() -> std::net::SocketAddr {
        "127.0.0.1:8081".parse().unwrap()
    }

    fn public() -> std::net::SocketAddr {
        "0.0.0.0:8081".parse().unwrap()
    }

    fn with_token(token: &str) -> HttpRequest {
        TestRequest::default()
            .insert_header(("Authorization", format!("Bearer {token}")))
            .to_http_request()
    }

    #[test]
    fn no_token_means_loopback_only() {
        let bare = TestRequest::default().to_http_request();
        assert!(ApiAccess::new(None, vec![], loopback())
            .check(&bare, Scope::Write)
            .is_ok());
        assert!(matches!(
            ApiAccess::new(None, vec![], public()).check(&bare, Scope::Read),
            Err(ApiError::NoTokenConfigured)
        ));
    }

    #[test]
    fn tokens_open_their_scopes_only() {
        let access = ApiAccess::new(
            Some("full-secret".to_owned().into()),
            vec!["read-secret".to_owned().into()],
            loopback(),
        );
        let bare = TestRequest::default().to_http_request();
        assert!(matches!(
            access.check(&bare, Scope::Read),
            Err(ApiError::Unauthorized)
        ));
        assert!(matches!(
            access.check(&with_token("wrong"), Scope::Read),
            Err(ApiError::Unauthorized)
        ));
        assert!(matches!(
            access.check(&with_token("full-secre"), Scope::Read),
            Err(ApiError::Unauthorized)
        ));
        assert!(access
            .check(&with_token("full-secret"), Scope::Write)
            .is_ok());
        assert!(access
            .check(&with_token("read-secret"), Scope::Read)
            .is_ok());
        assert!(matches!(
            access.check(&with_token("read-secret"), Scope::Write),
            Err(ApiError::ReadOnlyToken)
        ));
        let lower = TestRequest::default()
            .insert_header(("Authorization", "bearer read-secret"))
            .to_http_request();
        assert!(access.check(&lower, Scope::Read).is_ok());
    }
}
