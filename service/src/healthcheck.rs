//! `service healthcheck`: asks the running service for `/health` over loopback, so the
//! container's HEALTHCHECK needs no curl and no shell in a scratch image.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum HealthError {
    #[error("nothing answered on {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("talking to {addr} failed: {source}")]
    Io {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{addr}/health answered {status_line:?}, expected HTTP 200")]
    Status {
        addr: SocketAddr,
        status_line: String,
    },
    #[error("{addr}/health answered 200 but the body does not say healthy: {body:?}")]
    Body { addr: SocketAddr, body: String },
}

/// Where the service listening on `bind` can be reached from inside its own container.
pub fn target(bind: SocketAddr) -> SocketAddr {
    let ip = if bind.ip().is_unspecified() {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        bind.ip()
    };
    SocketAddr::new(ip, bind.port())
}

/// GETs `/health` from `addr`; on success returns the body.
pub fn check(addr: SocketAddr, timeout: Duration) -> Result<String, HealthError> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .map_err(|source| HealthError::Connect { addr, source })?;
    let io = |source| HealthError::Io { addr, source };
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    write!(
        stream,
        "GET /health HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: service-healthcheck\r\nConnection: close\r\n\r\n"
    )
    .map_err(io)?;
    let mut raw = Vec::new();
    // The answer is a few hundred bytes; the cap keeps a misbehaving peer from filling memory.
    if let Err(source) = stream.take(64 * 1024).read_to_end(&mut raw) {
        // A peer that resets after answering still answered; judge what arrived.
        if raw.is_empty() {
            return Err(io(source));
        }
    }
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status_line = head.lines().next().unwrap_or_default().to_owned();
    if status_line.split_whitespace().nth(1) != Some("200") {
        return Err(HealthError::Status { addr, status_line });
    }
    if !body.contains("\"healthy\"") {
        return Err(HealthError::Body {
            addr,
            body: body.chars().take(200).collect(),
        });
    }
    Ok(body.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unspecified_bind_is_checked_on_loopback() {
        assert_eq!(
            target("0.0.0.0:8080".parse().unwrap()),
            "127.0.0.1:8080".parse().unwrap()
        );
        assert_eq!(
            target("127.0.0.2:9000".parse().unwrap()),
            "127.0.0.2:9000".parse().unwrap()
        );
    }
}
