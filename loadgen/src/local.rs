//! This tool only ever talks to services on this machine: every URL it is
//! given (HTTP, AMQP, Postgres) must name a loopback address or `localhost`.

use anyhow::{bail, Context};
use std::net::IpAddr;

/// Checks that `url` (`scheme://[user[:pass]@]host[:port][/...]`) points at loopback.
pub fn ensure_loopback(url: &str) -> anyhow::Result<()> {
    let (_, rest) = url
        .split_once("://")
        .with_context(|| "expected a URL of the form scheme://host:port/...")?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    let host = if let Some(end) = host_port.find(']') {
        &host_port[..=end]
    } else {
        host_port.split(':').next().unwrap_or("")
    };
    if host.eq_ignore_ascii_case("localhost") {
        return Ok(());
    }
    let ip: IpAddr = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .with_context(|| format!("{host:?} is neither a loopback address nor localhost"))?;
    if !ip.is_loopback() {
        bail!("refusing to connect to {ip}: only loopback addresses are allowed");
    }
    Ok(())
}

/// A Postgres URL with its database name replaced by `database`.
pub fn with_database(url: &str, database: &str) -> anyhow::Result<String> {
    let (scheme, rest) = url
        .split_once("://")
        .with_context(|| "expected postgres://user@host:port/database")?;
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let query = tail.split_once('?').map(|(_, q)| q);
    Ok(match query {
        Some(query) => format!("{scheme}://{authority}/{database}?{query}"),
        None => format!("{scheme}://{authority}/{database}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_only() {
        assert!(ensure_loopback("postgres://postgres@127.0.0.1:5432/x").is_ok());
        assert!(ensure_loopback("amqp://guest:guest@127.0.0.1:5672/%2f").is_ok());
        assert!(ensure_loopback("amqp://guest:guest@localhost:5672/%2f").is_ok());
        assert!(ensure_loopback("postgres://[::1]:5432/x").is_ok());
        assert!(ensure_loopback("postgres://postgres@10.1.2.3:5432/x").is_err());
        assert!(ensure_loopback("postgres://db.example.com/x").is_err());
    }

    #[test]
    fn database_name_is_replaced() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/app", "other").unwrap(),
            "postgres://postgres@127.0.0.1:5432/other"
        );
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432", "other").unwrap(),
            "postgres://postgres@127.0.0.1:5432/other"
        );
        assert_eq!(
            with_database("postgres://p@127.0.0.1/app?sslmode=disable", "o").unwrap(),
            "postgres://p@127.0.0.1/o?sslmode=disable"
        );
    }
}
