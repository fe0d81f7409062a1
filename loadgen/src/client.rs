//! One kept-alive HTTP/1.1 connection per in-flight request slot, the same
//! for the pipeline and the HTTP ceiling, so both are measured with the same
//! client cost. Plain HTTP to a loopback address only: a load generator must
//! never point at anything but this machine.

use anyhow::{bail, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::HeaderValue;
use hyper::Request;
use hyper_util::rt::TokioIo;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::workload::SignedCallback;

/// Where requests go: the address to connect to, and the URL parts the
/// request line and `Host` header need (the signed URL is the full one).
#[derive(Clone, Debug)]
pub struct Target {
    pub addr: SocketAddr,
    pub host_header: String,
    pub path_and_query: String,
}

impl Target {
    /// Accepts `http://127.x.x.x:port/path?query` or `http://[::1]:port/...`,
    /// or `http://localhost:port/...`; refuses anything that is not loopback.
    pub fn parse(url: &str) -> anyhow::Result<Self> {
        let rest = url
            .strip_prefix("http://")
            .context("the URL must start with http:// (a loopback address)")?;
        let rest = rest.split('#').next().unwrap_or(rest);
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path_and_query) = rest.split_at(authority_end);
        let path_and_query = match path_and_query {
            "" => "/".to_owned(),
            p if p.starts_with('?') => format!("/{p}"),
            p => p.to_owned(),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) if !port.contains(']') => (
                host,
                port.parse::<u16>()
                    .with_context(|| format!("bad port in {url}"))?,
            ),
            _ => (authority, 80),
        };
        let ip: IpAddr = match host.trim_start_matches('[').trim_end_matches(']') {
            "localhost" => IpAddr::from([127, 0, 0, 1]),
            literal => literal
                .parse()
                .with_context(|| format!("{host} is not an IP address or localhost"))?,
        };
        if !ip.is_loopback() {
            bail!("refusing to send load to {ip}: only loopback addresses are allowed");
        }
        Ok(Self {
            addr: SocketAddr::new(ip, port),
            host_header: authority.to_owned(),
            path_and_query,
        })
    }
}

/// How one request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    Status(u16),
    /// No answer: connect, write or read failed, or no answer in time.
    TransportError,
}

/// A kept-alive connection, opened on first use and reopened after a failure.
pub struct Connection {
    target: Target,
    sender: Option<SendRequest<Full<Bytes>>>,
    timeout: Duration,
    last_used: Instant,
    /// `Authorization` of every GET (the worker's API token), if any.
    authorization: Option<HeaderValue>,
}

/// A connection idle longer than this is not reused: servers close idle
/// keep-alive connections (actix-web after 5 s), and a request written just
/// as the server's FIN arrives is lost in transit.
const MAX_IDLE_REUSE: Duration = Duration::from_secs(2);

impl Connection {
    pub fn new(target: Target, timeout: Duration) -> Self {
        Self {
            target,
            sender: None,
            timeout,
            last_used: Instant::now(),
            authorization: None,
        }
    }

    /// Every GET on this connection carries `Authorization: Bearer <token>`.
    pub fn with_bearer(mut self, token: &str) -> anyhow::Result<Self> {
        let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
            .context("the token cannot be sent in a header")?;
        value.set_sensitive(true);
        self.authorization = Some(value);
        Ok(self)
    }

    /// Posts one signed callback as Twilio does.
    pub async fn post_callback(&mut self, callback: &SignedCallback) -> Answer {
        let timeout = self.timeout;
        let exchange = async { status_after_body(self.exchange(callback).await?).await };
        let outcome = tokio::time::timeout(timeout, exchange).await;
        self.settle(outcome)
            .map_or(Answer::TransportError, Answer::Status)
    }

    /// GETs `path_and_query` on the target's host (`loadgen read`,
    /// `loadgen search`): the answer and its whole body (empty without an
    /// answer).
    pub async fn get(&mut self, path_and_query: &str) -> (Answer, Bytes) {
        let timeout = self.timeout;
        let authorization = self.authorization.clone();
        let exchange = async {
            let mut request = Request::get(path_and_query)
                .header(hyper::header::HOST, self.target.host_header.as_str());
            if let Some(authorization) = authorization {
                request = request.header(hyper::header::AUTHORIZATION, authorization);
            }
            let response = self.send(request.body(Full::new(Bytes::new()))?).await?;
            let status = response.status().as_u16();
            let body = response.into_body().collect().await?.to_bytes();
            anyhow::Ok((status, body))
        };
        let outcome = tokio::time::timeout(timeout, exchange).await;
        match self.settle(outcome) {
            Some((status, body)) => (Answer::Status(status), body),
            None => (Answer::TransportError, Bytes::new()),
        }
    }

    /// An exchange's outcome; after a failure or no answer in time the
    /// connection's state is unknown, so the next request starts afresh.
    fn settle<T>(
        &mut self,
        outcome: Result<anyhow::Result<T>, tokio::time::error::Elapsed>,
    ) -> Option<T> {
        match outcome {
            Ok(Ok(answer)) => Some(answer),
            Ok(Err(_)) | Err(_) => {
                self.sender = None;
                None
            }
        }
    }

    /// Like `post_callback`, keeping the answer's headers and body (`loadgen send`).
    pub async fn post_callback_verbose(
        &mut self,
        callback: &SignedCallback,
    ) -> anyhow::Result<FullAnswer> {
        let timeout = self.timeout;
        let exchange = async {
            let response = self.exchange(callback).await?;
            let status = response.status().as_u16();
            let headers = response
                .headers()
                .iter()
                .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into()))
                .collect();
            let body = response.into_body().collect().await?.to_bytes();
            anyhow::Ok(FullAnswer {
                status,
                headers,
                body,
            })
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .context("no answer in time")?
    }

    async fn exchange(
        &mut self,
        callback: &SignedCallback,
    ) -> anyhow::Result<hyper::Response<hyper::body::Incoming>> {
        let request = Request::post(self.target.path_and_query.as_str())
            .header(hyper::header::HOST, self.target.host_header.as_str())
            .header(
                hyper::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(hyper::header::USER_AGENT, "TwilioProxy/1.1")
            .header("X-Twilio-Signature", callback.signature.as_str())
            .header(
                "I-Twilio-Idempotency-Token",
                format!("{:016x}-{:x}", fastrand::u64(..), callback.event_id),
            )
            .body(Full::new(callback.body.clone()))?;
        self.send(request).await
    }

    async fn send(
        &mut self,
        request: Request<Full<Bytes>>,
    ) -> anyhow::Result<hyper::Response<hyper::body::Incoming>> {
        let sender = self.sender().await?;
        sender.ready().await?;
        Ok(sender.send_request(request).await?)
    }

    async fn sender(&mut self) -> anyhow::Result<&mut SendRequest<Full<Bytes>>> {
        let fresh = self.last_used.elapsed() < MAX_IDLE_REUSE;
        self.last_used = Instant::now();
        let usable = fresh && self.sender.as_ref().is_some_and(|s| !s.is_closed());
        if !usable {
            let stream = tokio::net::TcpStream::connect(self.target.addr).await?;
            stream.set_nodelay(true)?;
            let (sender, connection) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(async move {
                // Ends when the server closes or the sender is dropped.
                let _ = connection.await;
            });
            self.sender = Some(sender);
        }
        self.sender.as_mut().context("no connection")
    }
}

/// The answer's status, once its whole body is read (so the connection can
/// carry the next request).
async fn status_after_body(
    response: hyper::Response<hyper::body::Incoming>,
) -> anyhow::Result<u16> {
    let status = response.status().as_u16();
    response.into_body().collect().await?;
    Ok(status)
}

/// An answer with everything in it.
#[derive(Debug)]
pub struct FullAnswer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_urls_parse() {
        let t = Target::parse("http://127.0.0.1:18080/twilio/status?x=1").unwrap();
        assert_eq!(t.addr, "127.0.0.1:18080".parse().unwrap());
        assert_eq!(t.host_header, "127.0.0.1:18080");
        assert_eq!(t.path_and_query, "/twilio/status?x=1");
        let t = Target::parse("http://localhost:8080").unwrap();
        assert_eq!(t.path_and_query, "/");
        assert_eq!(t.addr.port(), 8080);
        let t = Target::parse("http://[::1]:9/a").unwrap();
        assert!(t.addr.ip().is_loopback());
    }

    #[test]
    fn anything_but_loopback_is_refused() {
        assert!(Target::parse("http://10.0.0.1:8080/twilio/status").is_err());
        assert!(Target::parse("http://example.com/twilio/status").is_err());
        assert!(Target::parse("https://127.0.0.1/twilio/status").is_err());
    }
}
