//! The URL Twilio signed, rebuilt from the request it sent.
//!
//! Twilio signs the exact URL it called, so behind a TLS-terminating proxy
//! the URL this process sees is not the one that was signed. The operator
//! says which origin to trust: a configured public base URL (best), the
//! proxy's forwarded headers, or else the request's own `Host`.

use actix_web::http::header::HOST;
use actix_web::HttpRequest;

/// Where the scheme and host of the signed URL come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SignedUrlOrigin {
    /// `PUBLIC_BASE_URL`, without a trailing slash.
    PublicBase(String),
    /// `Forwarded` / `X-Forwarded-Proto` / `X-Forwarded-Host`, as set by a
    /// proxy we trust; the `Host` header fills a missing host.
    ForwardedHeaders,
    /// `http://` + the `Host` header.
    HostHeader,
}

impl SignedUrlOrigin {
    pub fn new(public_base_url: Option<String>, trust_forwarded_headers: bool) -> Self {
        match public_base_url {
            Some(base) => Self::PublicBase(base),
            None if trust_forwarded_headers => Self::ForwardedHeaders,
            None => Self::HostHeader,
        }
    }

    /// The origin followed by the path and query exactly as received.
    pub fn signed_url(&self, request: &HttpRequest) -> String {
        let path_and_query = request.uri().path_and_query().map_or("/", |pq| pq.as_str());
        match self {
            Self::PublicBase(base) => format!("{base}{path_and_query}"),
            Self::ForwardedHeaders => {
                let info = request.connection_info();
                let scheme = info.scheme().to_ascii_lowercase();
                if scheme == "http" || scheme == "https" {
                    format!("{scheme}://{}{path_and_query}", info.host())
                } else {
                    host_header_url(request, path_and_query)
                }
            }
            Self::HostHeader => host_header_url(request, path_and_query),
        }
    }
}

fn host_header_url(request: &HttpRequest, path_and_query: &str) -> String {
    let host = request
        .headers()
        .get(HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("localhost");
    format!("http://{host}{path_and_query}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn url(origin: &SignedUrlOrigin, request: TestRequest) -> String {
        origin.signed_url(&request.to_http_request())
    }

    #[test]
    fn the_public_base_wins_and_keeps_the_query_as_sent() {
        let origin = SignedUrlOrigin::new(Some("https://hooks.example.com:8443".into()), true);
        let request = TestRequest::post()
            .uri("/twilio/status?b=x%20y&a=1")
            .insert_header(("Host", "internal:8080"))
            .insert_header(("X-Forwarded-Host", "elsewhere"));
        assert_eq!(
            url(&origin, request),
            "https://hooks.example.com:8443/twilio/status?b=x%20y&a=1"
        );
    }

    #[test]
    fn forwarded_headers_count_only_when_trusted() {
        let request = || {
            TestRequest::post()
                .uri("/twilio/status")
                .insert_header(("Host", "internal:8080"))
                .insert_header(("X-Forwarded-Proto", "https"))
                .insert_header(("X-Forwarded-Host", "hooks.example.com"))
        };
        assert_eq!(
            url(&SignedUrlOrigin::new(None, false), request()),
            "http://internal:8080/twilio/status"
        );
        assert_eq!(
            url(&SignedUrlOrigin::new(None, true), request()),
            "https://hooks.example.com/twilio/status"
        );
    }

    #[test]
    fn rfc7239_forwarded_and_an_odd_scheme() {
        let trusted = SignedUrlOrigin::ForwardedHeaders;
        let forwarded = TestRequest::post()
            .uri("/twilio/status")
            .insert_header(("Host", "internal"))
            .insert_header((
                "Forwarded",
                "proto=https;host=\"hooks.example.com\", proto=http",
            ));
        assert_eq!(
            url(&trusted, forwarded),
            "https://hooks.example.com/twilio/status"
        );
        let odd = TestRequest::post()
            .uri("/twilio/status")
            .insert_header(("Host", "internal"))
            .insert_header(("X-Forwarded-Proto", "ftp"));
        assert_eq!(url(&trusted, odd), "http://internal/twilio/status");
    }
}
