//! The `/metrics` endpoint: a tiny HTTP/1.1 server on glommio TCP, run by shard 0 only (one
//! port, one bound address to log). `GET /metrics` answers 200 with every shard's metrics
//! merged (Prometheus text format 0.0.4); any other path 404, another method 405, a
//! malformed request 400, an oversized one 431. One request per connection
//! (`Connection: close`).
//!
//! Bounds: the request head is at most [`REQUEST_HEAD_MAX_BYTES`] and must arrive within
//! [`READ_TIMEOUT`]; at most [`SCRAPES_IN_FLIGHT_MAX`] connections are served at once (more
//! wait in the accept queue); a shard that does not answer within [`PEER_TIMEOUT`] is left
//! out of that scrape.

use std::net::SocketAddr;
use std::os::fd::{FromRawFd, IntoRawFd};
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_lite::{future, AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};
use glommio::sync::Semaphore;
use prometheus_client::encoding::prometheus_text::CONTENT_TYPE;
use thiserror::Error;
use tracing::{debug, info, warn};

use super::merge::merge;
use crate::shard::messages::{MeshReply, MeshRequest};
use crate::shard::Shard;
use crate::types::ShardId;

/// Largest request head (request line and headers) read.
pub const REQUEST_HEAD_MAX_BYTES: usize = 8 * 1024;
/// How long a client may take to send its request head.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// How long writing a response may take.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Metrics connections served at once.
pub const SCRAPES_IN_FLIGHT_MAX: u64 = 8;
/// How long a scrape waits for another shard's metrics.
pub const PEER_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause after a failed accept.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// Why the metrics endpoint could not start.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum MetricsError {
    /// `metrics.listen` could not be bound.
    #[error("cannot listen for metrics on {address}: {source}")]
    Bind {
        /// The configured address.
        address: String,
        /// Cause.
        source: std::io::Error,
    },
}

/// On shard 0, binds `metrics.listen` (unless disabled) and serves it until shutdown. Other
/// shards do nothing. Binds without SO_REUSEPORT, so a port in use is an error.
pub fn start(shard: &Rc<Shard>) -> Result<Option<SocketAddr>, MetricsError> {
    if shard.id != ShardId::METADATA_OWNER {
        return Ok(None);
    }
    let Some(listen) = shard.config.metrics_listen.clone() else {
        info!("metrics endpoint disabled (metrics.listen=none)");
        return Ok(None);
    };
    let address = listen.to_socket_string();
    let bind_error = |source| MetricsError::Bind {
        address: address.clone(),
        source,
    };
    let std_listener = std::net::TcpListener::bind(&address).map_err(bind_error)?;
    let bound = std_listener.local_addr().map_err(bind_error)?;
    // SAFETY: the fd is a bound, listening TCP socket we just created and own; ownership
    // moves into the glommio listener.
    let listener = unsafe { TcpListener::from_raw_fd(std_listener.into_raw_fd()) };
    info!("metrics listening on http://{bound}/metrics");
    glommio::spawn_local(accept_loop(shard.clone(), listener)).detach();
    Ok(Some(bound))
}

async fn accept_loop(shard: Rc<Shard>, listener: TcpListener) {
    let slots = Rc::new(Semaphore::new(SCRAPES_IN_FLIGHT_MAX));
    loop {
        let accepted = future::or(
            async {
                let permit = slots.acquire_static_permit(1).await.ok()?;
                Some((listener.accept().await, permit))
            },
            async {
                shard.shutdown.wait().await;
                None
            },
        )
        .await;
        match accepted {
            None => return,
            Some((Ok(stream), permit)) => {
                let shard = shard.clone();
                glommio::spawn_local(async move {
                    serve_connection(&shard, stream).await;
                    drop(permit);
                })
                .detach();
            }
            Some((Err(err), _)) => {
                warn!(error = %err, "metrics accept failed");
                glommio::timer::sleep(ACCEPT_ERROR_BACKOFF).await;
            }
        }
    }
}

/// What the request head asks for.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    /// `GET /metrics` (or `HEAD`: headers only).
    Metrics {
        head_only: bool,
    },
    NotFound,
    MethodNotAllowed,
    BadRequest,
}

/// Outcome of reading a request head.
enum HeadRead {
    Complete(Vec<u8>),
    TooLarge,
    /// The peer closed before a complete head.
    Closed,
}

async fn serve_connection(shard: &Rc<Shard>, mut stream: TcpStream) {
    let peer = stream.peer_addr().ok();
    let head = future::or(async { Some(read_head(&mut stream).await) }, async {
        glommio::timer::sleep(READ_TIMEOUT).await;
        None
    })
    .await;
    let response = match head {
        None => Some(plain(408, "Request Timeout", "request timeout\n")),
        Some(Err(err)) => {
            debug!(peer = ?peer, error = %err, "metrics connection read failed");
            None
        }
        Some(Ok(HeadRead::Closed)) => None,
        Some(Ok(HeadRead::TooLarge)) => Some(plain(
            431,
            "Request Header Fields Too Large",
            "request too large\n",
        )),
        Some(Ok(HeadRead::Complete(head))) => Some(match route(&head) {
            Route::Metrics { head_only } => {
                let started = Instant::now();
                let body = scrape(shard).await;
                debug!(peer = ?peer, bytes = body.len(), elapsed_us = started.elapsed().as_micros() as u64, "metrics scraped");
                response(200, "OK", CONTENT_TYPE, &body, head_only)
            }
            Route::NotFound => plain(404, "Not Found", "not found; try /metrics\n"),
            Route::MethodNotAllowed => plain(405, "Method Not Allowed", "use GET\n"),
            Route::BadRequest => plain(400, "Bad Request", "bad request\n"),
        }),
    };
    if let Some(bytes) = response {
        let written = future::or(async { Some(stream.write_all(&bytes).await) }, async {
            glommio::timer::sleep(WRITE_TIMEOUT).await;
            None
        })
        .await;
        match written {
            Some(Ok(())) => {}
            Some(Err(err)) => debug!(peer = ?peer, error = %err, "metrics response write failed"),
            None => debug!(peer = ?peer, "metrics response write timed out"),
        }
    }
    // glommio closes fds asynchronously; close now so the client sees EOF (RUNTIME-NOTES
    // pitfall 3).
    if let Err(err) = stream.close().await {
        debug!(peer = ?peer, error = %err, "metrics connection close failed");
    }
}

/// Reads until the blank line that ends an HTTP head, at most [`REQUEST_HEAD_MAX_BYTES`].
async fn read_head(stream: &mut TcpStream) -> std::io::Result<HeadRead> {
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            return Ok(HeadRead::Closed);
        }
        let before = head.len();
        head.extend_from_slice(chunk.get(..read).unwrap_or_default());
        // Look for the end of the head from a little before the new bytes.
        let from = before.saturating_sub(3);
        if let Some(end) = find_head_end(head.get(from..).unwrap_or_default()) {
            head.truncate(from + end);
            return Ok(HeadRead::Complete(head));
        }
        if head.len() > REQUEST_HEAD_MAX_BYTES {
            return Ok(HeadRead::TooLarge);
        }
    }
}

/// Position just past the `\r\n\r\n` (or bare `\n\n`) that ends a head.
fn find_head_end(bytes: &[u8]) -> Option<usize> {
    let crlf = bytes
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .map(|p| p + 4);
    let lf = bytes
        .windows(2)
        .position(|window| window == b"\n\n")
        .map(|p| p + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Routes a request by its request line (`METHOD TARGET HTTP/1.x`).
fn route(head: &[u8]) -> Route {
    let Ok(text) = std::str::from_utf8(head) else {
        return Route::BadRequest;
    };
    let line = text.split('\n').next().unwrap_or("").trim_end_matches('\r');
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Route::BadRequest;
    };
    let token = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphabetic());
    if !token(method) || !target.starts_with('/') || !version.starts_with("HTTP/1.") {
        return Route::BadRequest;
    }
    let path = target.split(['?', '#']).next().unwrap_or("");
    let head_only = match method {
        "GET" => false,
        "HEAD" => true,
        _ => return Route::MethodNotAllowed,
    };
    if path == "/metrics" {
        Route::Metrics { head_only }
    } else {
        Route::NotFound
    }
}

fn response(status: u16, reason: &str, content_type: &str, body: &str, head_only: bool) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(body.as_bytes());
    }
    out
}

fn plain(status: u16, reason: &str, body: &str) -> Vec<u8> {
    response(status, reason, "text/plain; charset=utf-8", body, false)
}

/// Collects every shard's metrics (this one directly, the others over the mesh, at the same
/// time) and merges them into one exposition.
pub async fn scrape(shard: &Rc<Shard>) -> String {
    let mut calls = Vec::with_capacity(shard.shard_count);
    for peer in (0..shard.shard_count).filter(|&peer| peer != shard.id.0) {
        let caller = shard.clone();
        calls.push((
            peer,
            glommio::spawn_local(async move {
                future::or(
                    async { Some(caller.mesh.call(ShardId(peer), MeshRequest::Metrics).await) },
                    async {
                        glommio::timer::sleep(PEER_TIMEOUT).await;
                        None
                    },
                )
                .await
            }),
        ));
    }
    let mut texts = Vec::with_capacity(shard.shard_count);
    texts.push(shard.render_metrics());
    for (peer, call) in calls {
        match call.await {
            Some(Ok(MeshReply::Metrics(text))) => texts.push(text),
            Some(Ok(_)) => warn!(peer, "shard sent an unexpected reply to a metrics request"),
            Some(Err(err)) => warn!(peer, error = %err, "shard metrics not collected"),
            None => warn!(peer, "shard metrics not collected in time"),
        }
    }
    merge(&texts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_requests() {
        assert_eq!(
            route(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Route::Metrics { head_only: false }
        );
        assert_eq!(
            route(b"GET /metrics?x=1 HTTP/1.0\r\n\r\n"),
            Route::Metrics { head_only: false }
        );
        assert_eq!(
            route(b"HEAD /metrics HTTP/1.1\r\n\r\n"),
            Route::Metrics { head_only: true }
        );
        assert_eq!(route(b"GET / HTTP/1.1\r\n\r\n"), Route::NotFound);
        assert_eq!(route(b"GET /metricsx HTTP/1.1\r\n\r\n"), Route::NotFound);
        assert_eq!(
            route(b"POST /metrics HTTP/1.1\r\n\r\n"),
            Route::MethodNotAllowed
        );
        assert_eq!(route(b"GET /metrics\r\n\r\n"), Route::BadRequest);
        assert_eq!(route(b"GET metrics HTTP/1.1\r\n\r\n"), Route::BadRequest);
        assert_eq!(route(b"GET /metrics SPDY/3\r\n\r\n"), Route::BadRequest);
        assert_eq!(route(b"\xff\xfe garbage\n\n"), Route::BadRequest);
        assert_eq!(route(b"\r\n\r\n"), Route::BadRequest);
        assert_eq!(route(b""), Route::BadRequest);
    }

    #[test]
    fn finds_the_end_of_a_head() {
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\n\r\nbody"), Some(18));
        assert_eq!(find_head_end(b"GET / HTTP/1.1\n\n"), Some(16));
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\n"), None);
        assert_eq!(find_head_end(b""), None);
    }

    #[test]
    fn responses_carry_length_and_close() {
        let text =
            String::from_utf8(response(200, "OK", CONTENT_TYPE, "abc", false)).expect("ascii");
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(text.contains("Content-Length: 3\r\n"));
        assert!(text.contains("Connection: close\r\n"));
        assert!(text.ends_with("\r\n\r\nabc"));
        let head =
            String::from_utf8(response(200, "OK", CONTENT_TYPE, "abc", true)).expect("ascii");
        assert!(head.ends_with("\r\n\r\n"));
    }
}
