//! TCP_NODELAY and TCP keepalive for sockets that a library opened without
//! them.
//!
//! Keepalive: a connection whose peer vanished silently (a failover, a
//! dropped NAT entry) would otherwise wait for the kernel's two hours before
//! failing, holding a batch's deliveries past RabbitMQ's consumer_timeout.
//! With `KEEPALIVE_IDLE` and `KEEPALIVE_INTERVAL` it fails in about two
//! minutes (Linux's nine probes), and the worker holds and reconnects.
//!
//! sqlx 0.9.0 stopped setting TCP_NODELAY on its Postgres connections
//! (transact-rs/sqlx#4335; fixed upstream by #4336, not released yet). With
//! Nagle's algorithm on, the tail of any statement longer than one TCP
//! segment waits for Postgres's delayed ACK, about 40 ms: a 256-row batch
//! insert took ~100 ms instead of a few. sqlx gives no access to its socket,
//! so right after it connects we look through this process's open sockets and
//! set the option on those whose peer is the database's port.
//!
//! Remove this once an sqlx release sets TCP_NODELAY itself (sqlx 0.9.0 is
//! the newest on crates.io as of 2026-12-03, so no `[patch]` pin to a release
//! is possible; a git pin is not reachable from this build machine). It lives
//! in the worker, its only user.

use std::io;
use std::time::Duration;

/// Idle time before the first keepalive probe.
pub const KEEPALIVE_IDLE: Duration = Duration::from_secs(30);
/// Time between unanswered probes.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);

/// Sets TCP_NODELAY and keepalive on every TCP socket of this process whose
/// peer port is `peer_port` and which does not have them yet. Returns how
/// many it changed. A no-op returning 0 outside Linux (it reads `/proc/self/fd`).
pub fn tune_for_peer_port(peer_port: u16) -> io::Result<usize> {
    let mut changed = 0;
    #[cfg(target_os = "linux")]
    linux::for_each_socket(|socket| {
        let to_peer_port = socket
            .peer_addr()
            .ok()
            .and_then(|address| address.as_socket())
            .is_some_and(|address| address.port() == peer_port);
        if to_peer_port && !socket.tcp_nodelay().unwrap_or(true) {
            socket.set_tcp_nodelay(true)?;
            socket.set_tcp_keepalive(
                &socket2::TcpKeepalive::new()
                    .with_time(KEEPALIVE_IDLE)
                    .with_interval(KEEPALIVE_INTERVAL),
            )?;
            changed += 1;
        }
        Ok(())
    })?;
    #[cfg(not(target_os = "linux"))]
    let _ = peer_port;
    Ok(changed)
}

/// What a socket of ours has set (`tune_for_peer_port`).
#[cfg(any(test, feature = "test-support"))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SocketOptions {
    pub nodelay: bool,
    pub keepalive: bool,
    pub keepalive_idle: Duration,
}

/// The options of this process's TCP socket bound to `local_port`; `None`
/// if there is no such socket (always, outside Linux). For tests: a database session tells its client port
/// (`inet_client_port()`), this finds our end of it.
#[cfg(any(test, feature = "test-support"))]
pub fn options_of_local_port(local_port: u16) -> io::Result<Option<SocketOptions>> {
    let mut found = None;
    #[cfg(target_os = "linux")]
    linux::for_each_socket(|socket| {
        let bound_here = socket
            .local_addr()
            .ok()
            .and_then(|address| address.as_socket())
            .is_some_and(|address| address.port() == local_port);
        if bound_here && socket.peer_addr().is_ok() {
            found = Some(SocketOptions {
                nodelay: socket.tcp_nodelay()?,
                keepalive: socket.keepalive()?,
                keepalive_idle: socket.tcp_keepalive_time()?,
            });
        }
        Ok(())
    })?;
    #[cfg(not(target_os = "linux"))]
    let _ = local_port;
    Ok(found)
}

#[cfg(target_os = "linux")]
mod linux {
    use socket2::SockRef;
    use std::io;
    use std::os::fd::{BorrowedFd, RawFd};

    /// Calls `visit` with each socket this process has open.
    pub(super) fn for_each_socket(
        mut visit: impl FnMut(SockRef<'_>) -> io::Result<()>,
    ) -> io::Result<()> {
        for entry in std::fs::read_dir("/proc/self/fd")? {
            let Ok(entry) = entry else { continue };
            let Some(fd) = entry
                .file_name()
                .to_str()
                .and_then(|name| name.parse::<RawFd>().ok())
            else {
                continue;
            };
            let is_socket = std::fs::read_link(entry.path()).is_ok_and(|target| {
                target
                    .as_os_str()
                    .as_encoded_bytes()
                    .starts_with(b"socket:")
            });
            if is_socket {
                visit_borrowed(fd, &mut visit)?;
            }
        }
        Ok(())
    }

    #[allow(unsafe_code)]
    fn visit_borrowed(
        fd: RawFd,
        visit: &mut impl FnMut(SockRef<'_>) -> io::Result<()>,
    ) -> io::Result<()> {
        // SAFETY: `fd` was an open socket a moment ago and the borrow ends
        // with this call. If another thread closes it in between, socket
        // calls on it fail with EBADF, or act on whatever reused the number:
        // callers only read addresses and options and set TCP_NODELAY, which
        // and keepalive harm no socket; no memory is involved.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        visit(SockRef::from(&fd))
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn tunes_only_the_sockets_to_the_given_port() {
        let target = TcpListener::bind("127.0.0.1:0").unwrap();
        let other = TcpListener::bind("127.0.0.1:0").unwrap();
        let to_target = TcpStream::connect(target.local_addr().unwrap()).unwrap();
        let to_other = TcpStream::connect(other.local_addr().unwrap()).unwrap();
        assert!(!to_target.nodelay().unwrap(), "Linux default is Nagle on");

        let changed = tune_for_peer_port(target.local_addr().unwrap().port()).unwrap();

        assert_eq!(changed, 1);
        assert!(to_target.nodelay().unwrap());
        assert!(!to_other.nodelay().unwrap());
        assert_eq!(
            tune_for_peer_port(target.local_addr().unwrap().port()).unwrap(),
            0
        );
        let local_port = |stream: &TcpStream| stream.local_addr().unwrap().port();
        let tuned = options_of_local_port(local_port(&to_target))
            .unwrap()
            .unwrap();
        assert!(tuned.nodelay && tuned.keepalive);
        assert_eq!(tuned.keepalive_idle, KEEPALIVE_IDLE);
        let untouched = options_of_local_port(local_port(&to_other))
            .unwrap()
            .unwrap();
        assert!(!untouched.nodelay && !untouched.keepalive);
    }
}
