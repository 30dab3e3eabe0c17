//! One client connection: a reader that frames and dispatches requests, and a writer that
//! sends responses in request order (Kafka answers a connection's requests in order).
//!
//! Bounds: a frame above `socket.request.max.bytes` closes the connection before its body is
//! read; request bytes in flight are limited by `connection.inflight.max.bytes` (the reader
//! stops reading, so TCP pushes back on the client); at most [`MAX_INFLIGHT_REQUESTS`]
//! requests wait for their responses.
//!
//! Idle connections: with no request in flight and no bytes read or written for
//! `connections.max.idle.ms`, the connection is closed (Kafka's `Selector` does the same).

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use futures_lite::future;
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::net::TcpStream;
use glommio::sync::{Semaphore, StaticPermit};
use glommio::Task;
use kafka_protocol::messages::ApiKey;
use tracing::{debug, info, warn};

use super::io::{close, read, write_all_vectored};
use crate::handlers::{self, api_versions, BodyPart, HandlerError, Ordering, Response, Route};
use crate::local_sync::{Event, Latch};
use crate::protocol::frame::{bytes_missing, split_frame};
use crate::protocol::request::{decode_header, fixed_prefix, RequestHead};
use crate::protocol::response::{response_head, response_header_version};
use crate::shard::Shard;

/// Most requests one connection may have waiting for responses.
pub const MAX_INFLIGHT_REQUESTS: usize = 512;
/// The read buffer's first capacity.
const READ_CHUNK_BYTES: usize = 64 * 1024;
/// Largest read. The buffer grows with the bytes that actually arrive, not with what a
/// length prefix claims, so a client announcing a 100 MiB frame and sending nothing costs
/// at most this much.
const READ_CHUNK_MAX_BYTES: usize = 1024 * 1024;
/// Smallest read, and the largest while waiting for data on an empty socket (that read's
/// buffer is zeroed).
const READ_WAIT_BYTES: usize = 16 * 1024;

/// A response slot in the ordered queue.
struct Pending {
    head: RequestHead,
    outcome: Outcome,
    _permit: Option<StaticPermit>,
    /// When the request was decoded (request latency metric).
    started: Instant,
}

enum Outcome {
    /// A handler running in its own task.
    Running(Task<Result<Response, HandlerError>>),
    /// A response known at dispatch time.
    Ready(Bytes),
}

/// Why a connection ended (for the log line).
#[derive(Debug)]
enum CloseReason {
    PeerClosed,
    Shutdown,
    Idle,
    WriterStopped,
    Io(std::io::Error),
    Protocol(String),
}

struct ConnectionState {
    shard: Rc<Shard>,
    peer: Option<SocketAddr>,
    id: u64,
    stream: RefCell<TcpStream>,
    /// Request bytes in flight (each request holds permits until its response is written).
    budget: Rc<Semaphore>,
    budget_bytes: u64,
    /// Requests dispatched but not yet answered.
    inflight: Cell<usize>,
    inflight_changed: Rc<Event>,
    /// Set by the writer when it stops (write error or handler failure).
    writer_stopped: Rc<Latch>,
    /// When bytes were last read or a response last written (for the idle timeout).
    last_activity: Cell<Instant>,
}

/// Serves one accepted connection until it closes or the shard shuts down. The caller has
/// registered it (`Shard::connection_opened`, which returned `id`); it is deregistered here.
pub async fn serve(shard: Rc<Shard>, stream: TcpStream, id: u64) {
    let peer = stream.peer_addr().ok();
    if let Err(err) = stream.set_nodelay(true) {
        debug!(error = %err, "cannot set TCP_NODELAY");
    }
    let budget_bytes = shard.config.connection_inflight_max_bytes;
    let state = Rc::new(ConnectionState {
        shard: shard.clone(),
        peer,
        id,
        stream: RefCell::new(stream),
        budget: Rc::new(Semaphore::new(budget_bytes)),
        budget_bytes,
        inflight: Cell::new(0),
        inflight_changed: Event::new(),
        writer_stopped: Latch::new(),
        last_activity: Cell::new(Instant::now()),
    });
    debug!(shard = %shard.id, conn = id, peer = ?peer, "connection opened");
    shard.metrics.connection_accepted();

    let (queue_tx, queue_rx) = local_channel::new_bounded(MAX_INFLIGHT_REQUESTS);
    let writer = glommio::spawn_local(write_loop(state.clone(), queue_rx));
    let reason = read_loop(&state, &queue_tx).await;
    // Let the writer send every response already queued, then stop.
    drop(queue_tx);
    writer.await;
    match &reason {
        CloseReason::Protocol(message) => {
            warn!(shard = %shard.id, conn = id, peer = ?peer, "closing connection: {message}")
        }
        CloseReason::Io(err) => {
            debug!(shard = %shard.id, conn = id, peer = ?peer, error = %err, "connection I/O error")
        }
        other => {
            debug!(shard = %shard.id, conn = id, peer = ?peer, reason = ?other, "connection closed")
        }
    }
    // glommio closes fds asynchronously; close explicitly so the peer sees EOF now
    // (RUNTIME-NOTES pitfall 3).
    if let Err(err) = close(&state.stream).await {
        debug!(conn = id, error = %err, "close failed");
    }
    shard.connection_closed();
}

async fn read_loop(state: &Rc<ConnectionState>, queue: &LocalSender<Pending>) -> CloseReason {
    let shard = &state.shard;
    let max_frame = usize::try_from(shard.config.socket_request_max_bytes).unwrap_or(usize::MAX);
    let mut buf = BytesMut::with_capacity(READ_CHUNK_BYTES);
    // True when the last read got less than it asked for: the socket is probably empty, so
    // the next read waits through glommio rather than trying a `recv` that would fail.
    let mut drained = true;
    let fd = state.stream.borrow().as_raw_fd();
    loop {
        // Dispatch every complete frame already buffered.
        loop {
            match split_frame(&mut buf, max_frame) {
                Ok(Some(frame)) => {
                    if let Err(reason) = dispatch(state, queue, frame).await {
                        return reason;
                    }
                }
                Ok(None) => break,
                Err(err) => {
                    return CloseReason::Protocol(format!("invalid request frame: {err}"));
                }
            }
        }
        if shard.shutdown.is_set() {
            return CloseReason::Shutdown;
        }
        // A frame of known length is read up to its end (a small one with a little of the
        // next), so a large next frame starts in a buffer of its own and `make_room` copies
        // at most its first READ_WAIT_BYTES; a frame of unknown length gets that window.
        let want = bytes_missing(&buf, max_frame).clamp(READ_WAIT_BYTES, READ_CHUNK_MAX_BYTES);
        if !drained {
            // Data is likely waiting (the last read filled what it asked for): receive it
            // straight into the buffer's spare capacity, without zeroing it first.
            match recv_into_spare(fd, &mut buf, want) {
                Some(Ok(0)) => return CloseReason::PeerClosed,
                Some(Ok(n)) => {
                    state.last_activity.set(Instant::now());
                    drained = n < want;
                    continue;
                }
                Some(Err(err)) => return CloseReason::Io(err),
                None => {}
            }
        }
        // The socket looks empty: wait for data through glommio, reading into a small zeroed
        // window (a large one would be zeroed for nothing; more data, if any, then comes
        // through `recv_into_spare`).
        let start = buf.len();
        make_room(&mut buf, want);
        buf.resize(start + READ_WAIT_BYTES.min(want), 0);
        let read_result = {
            let reading = async {
                let target = buf.get_mut(start..).unwrap_or_default();
                ReadEvent::Data(read(&state.stream, target).await)
            };
            let shutdown = async {
                shard.shutdown.wait().await;
                ReadEvent::Shutdown
            };
            let writer_stopped = async {
                state.writer_stopped.wait().await;
                ReadEvent::WriterStopped
            };
            let idle = async {
                wait_idle_timeout(state).await;
                ReadEvent::Idle
            };
            future::or(
                reading,
                future::or(shutdown, future::or(writer_stopped, idle)),
            )
            .await
        };
        match read_result {
            ReadEvent::Data(Ok(0)) => {
                buf.truncate(start);
                return CloseReason::PeerClosed;
            }
            ReadEvent::Data(Ok(n)) => {
                state.last_activity.set(Instant::now());
                drained = start + n < buf.len();
                buf.truncate(start + n);
            }
            ReadEvent::Data(Err(err)) => return CloseReason::Io(err),
            ReadEvent::Shutdown => return CloseReason::Shutdown,
            ReadEvent::WriterStopped => return CloseReason::WriterStopped,
            ReadEvent::Idle => {
                buf.truncate(start);
                return CloseReason::Idle;
            }
        }
    }
}

/// One non-blocking `recv` of at most `max_bytes` from socket `fd` into the spare capacity of
/// `buf` (reserved first), which grows by what arrived. None if no data is waiting. Unlike a
/// read into a slice, the memory is not zeroed before the kernel overwrites it.
fn recv_into_spare(
    fd: RawFd,
    buf: &mut BytesMut,
    max_bytes: usize,
) -> Option<std::io::Result<usize>> {
    make_room(buf, max_bytes);
    let spare = buf.spare_capacity_mut();
    let len = spare.len().min(max_bytes);
    let target = spare.as_mut_ptr().cast::<libc::c_void>();
    loop {
        // SAFETY: `target` points to `len` bytes of `buf`'s spare capacity, writable and not
        // referenced by anything else while `buf` is borrowed mutably here; the kernel writes
        // at most `len` bytes there and Rust never reads them before `advance_mut` below.
        // MSG_DONTWAIT keeps the blocking fd (RUNTIME-NOTES pitfall 2) from blocking.
        let received = unsafe { libc::recv(fd, target, len, libc::MSG_DONTWAIT) };
        if let Ok(received) = usize::try_from(received) {
            // SAFETY: the kernel initialised the first `received` (<= `len`) bytes of the
            // spare capacity.
            unsafe { buf.advance_mut(received) };
            return Some(Ok(received));
        }
        let err = std::io::Error::last_os_error();
        match err.kind() {
            std::io::ErrorKind::Interrupted => continue,
            std::io::ErrorKind::WouldBlock => return None,
            _ => return Some(Err(err)),
        }
    }
}

/// Makes room for `additional` bytes after `buf`'s content. A buffer short of spare capacity
/// is replaced by a new one holding only its content (the start of the next frame):
/// `BytesMut::reserve` would instead grow the allocation, copying everything before the
/// content too, or copy the content out of an allocation that earlier frames still share.
/// That copying was 6-7% of the shard's CPU in open-loop produce runs.
fn make_room(buf: &mut BytesMut, additional: usize) {
    if buf.capacity() - buf.len() >= additional {
        return;
    }
    let mut fresh = BytesMut::with_capacity(buf.len().saturating_add(additional));
    fresh.extend_from_slice(buf);
    *buf = fresh;
}

enum ReadEvent {
    Data(std::io::Result<usize>),
    Shutdown,
    WriterStopped,
    Idle,
}

/// Completes once the connection has had no request in flight and no traffic for
/// `connections.max.idle.ms` (never, when that is -1).
async fn wait_idle_timeout(state: &ConnectionState) {
    let Ok(idle_ms) = u64::try_from(state.shard.config.connections_max_idle_ms) else {
        return future::pending().await;
    };
    let idle = Duration::from_millis(idle_ms);
    loop {
        let deadline = state.last_activity.get() + idle;
        let now = Instant::now();
        if now >= deadline {
            if state.inflight.get() == 0 {
                return;
            }
            // A request is in progress (a long-polling fetch, say): not idle; look again later.
            state.last_activity.set(now);
            continue;
        }
        glommio::timer::sleep(deadline - now).await;
    }
}

/// Waits until no request is in flight (or the writer stopped).
async fn wait_idle(state: &ConnectionState) {
    loop {
        let listener = state.inflight_changed.listen();
        if state.inflight.get() == 0 || state.writer_stopped.is_set() {
            return;
        }
        listener.await;
    }
}

async fn dispatch(
    state: &Rc<ConnectionState>,
    queue: &LocalSender<Pending>,
    frame: Bytes,
) -> Result<(), CloseReason> {
    let frame_bytes = frame.len() as u64;
    // Route on the fixed prefix first: an unsupported version may not even have a header we
    // can decode, and the answer (or the close) does not need one.
    let (raw_key, api_version, correlation_id) =
        fixed_prefix(&frame).map_err(|err| CloseReason::Protocol(err.to_string()))?;
    let Ok(api_key) = ApiKey::try_from(raw_key) else {
        return Err(CloseReason::Protocol(format!(
            "unknown API key {raw_key} v{api_version}, correlation id {correlation_id}"
        )));
    };
    let spec = match handlers::route(api_key, api_version) {
        Route::Handle(spec) => spec,
        Route::ApiVersionsUnsupported => {
            info!(
                conn = state.id, peer = ?state.peer, version = api_version,
                "ApiVersions version not supported; answering UNSUPPORTED_VERSION with the supported list"
            );
            let started = Instant::now();
            state.shard.metrics.request_received(api_key, api_version);
            let body = api_versions::unsupported_version_body()
                .map_err(|err| CloseReason::Protocol(err.to_string()))?;
            let head = RequestHead {
                api_key,
                api_version,
                correlation_id,
                client_id: None,
                peer: state.peer,
            };
            return enqueue(state, queue, head, Outcome::Ready(body), None, started).await;
        }
        Route::UnsupportedVersion {
            min_version,
            max_version,
        } => {
            return Err(CloseReason::Protocol(format!(
                "unsupported version {api_version} of {api_key:?} (supported {min_version}-{max_version}), correlation id {correlation_id}"
            )));
        }
        Route::UnsupportedApi => {
            return Err(CloseReason::Protocol(format!(
                "unsupported API {api_key:?} (key {raw_key}) v{api_version}, correlation id {correlation_id}"
            )));
        }
    };
    let mut body = frame;
    let mut head =
        decode_header(&mut body).map_err(|err| CloseReason::Protocol(err.to_string()))?;
    head.peer = state.peer;
    let started = Instant::now();
    state.shard.metrics.request_received(api_key, api_version);
    // Backpressure: wait until this request's bytes fit the connection's budget. A request
    // larger than the whole budget waits for an idle connection and then takes all of it.
    let units = frame_bytes.clamp(1, state.budget_bytes);
    let permit = state
        .budget
        .acquire_static_permit(units)
        .await
        .map_err(|_| CloseReason::WriterStopped)?;
    if spec.ordering == Ordering::Exclusive {
        wait_idle(state).await;
    }
    let task = glommio::spawn_local((spec.handle)(state.shard.clone(), head.clone(), body));
    enqueue(
        state,
        queue,
        head,
        Outcome::Running(task),
        Some(permit),
        started,
    )
    .await?;
    if spec.ordering == Ordering::Exclusive {
        wait_idle(state).await;
    }
    Ok(())
}

async fn enqueue(
    state: &ConnectionState,
    queue: &LocalSender<Pending>,
    head: RequestHead,
    outcome: Outcome,
    permit: Option<StaticPermit>,
    started: Instant,
) -> Result<(), CloseReason> {
    state.inflight.set(state.inflight.get() + 1);
    let pending = Pending {
        head,
        outcome,
        _permit: permit,
        started,
    };
    if queue.send(pending).await.is_err() {
        return Err(CloseReason::WriterStopped);
    }
    Ok(())
}

async fn write_loop(state: Rc<ConnectionState>, queue: LocalReceiver<Pending>) {
    while let Some(pending) = queue.recv().await {
        let result = match pending.outcome {
            Outcome::Ready(body) => Ok(Response::Body(body)),
            Outcome::Running(task) => task.await,
        };
        let written = match result {
            Ok(response) => {
                let written = write_response(&state, &pending.head, response).await;
                state.shard.metrics.request_completed(
                    pending.head.api_key,
                    pending.head.api_version,
                    pending.started.elapsed(),
                );
                written
            }
            Err(err) => {
                state.shard.metrics.request_failed(pending.head.api_key);
                warn!(
                    conn = state.id, peer = ?state.peer, api = ?pending.head.api_key,
                    version = pending.head.api_version, correlation_id = pending.head.correlation_id,
                    "closing connection: {err}"
                );
                Err(())
            }
        };
        state.inflight.set(state.inflight.get().saturating_sub(1));
        state.inflight_changed.notify_all();
        state.last_activity.set(Instant::now());
        if written.is_err() {
            break;
        }
    }
    state.writer_stopped.set();
    state.inflight_changed.notify_all();
    // Handlers still queued are cancelled when the queue (and their tasks) drop.
    drop(queue);
}

/// A body part ready to send.
enum Loaded {
    Memory(Bytes),
    Read(vaart_engine::ReadBuf),
}

impl Loaded {
    fn as_slice(&self) -> &[u8] {
        match self {
            Loaded::Memory(bytes) => bytes,
            Loaded::Read(buf) => buf,
        }
    }
}

async fn write_response(
    state: &ConnectionState,
    head: &RequestHead,
    response: Response,
) -> Result<(), ()> {
    let header_version = response_header_version(head.api_key, head.api_version);
    let result = match response {
        Response::NoResponse => return Ok(()),
        Response::Body(body) => {
            let Some(prefix) = response_head(header_version, head.correlation_id, body.len())
            else {
                warn!(conn = state.id, api = ?head.api_key, "response too large to frame");
                return Err(());
            };
            write_all_vectored(&state.stream, &[&prefix, &body]).await
        }
        Response::Parts(parts) => {
            let body_len = parts
                .iter()
                .map(BodyPart::len)
                .fold(0usize, usize::saturating_add);
            let Some(prefix) = response_head(header_version, head.correlation_id, body_len) else {
                warn!(conn = state.id, api = ?head.api_key, "response too large to frame");
                return Err(());
            };
            // File ranges are read (O_DIRECT into aligned buffers) just before sending and
            // sent from those buffers; memory parts are sent as they are.
            let mut loaded: Vec<Loaded> = Vec::with_capacity(parts.len());
            for part in parts {
                match part {
                    BodyPart::Memory(bytes) => loaded.push(Loaded::Memory(bytes)),
                    BodyPart::File {
                        file,
                        position,
                        length,
                    } => {
                        let length = usize::try_from(length).unwrap_or(usize::MAX);
                        // A consumer reads on from here: read ahead for its next fetch.
                        match file.read_sequential(position, length).await {
                            Ok(pieces) => loaded.extend(pieces.into_iter().map(Loaded::Read)),
                            Err(err) => {
                                // The frame length is already promised; the connection
                                // cannot continue.
                                warn!(conn = state.id, error = %err, "segment read for a fetch response failed; closing connection");
                                return Err(());
                            }
                        }
                    }
                }
            }
            let mut slices: Vec<&[u8]> = Vec::with_capacity(loaded.len() + 1);
            slices.push(&prefix);
            for part in &loaded {
                slices.push(part.as_slice());
            }
            write_all_vectored(&state.stream, &slices).await
        }
    };
    result.map_err(|err| {
        debug!(conn = state.id, peer = ?state.peer, error = %err, "write failed");
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::io::Write;
    use std::os::unix::net::UnixStream;

    use super::*;

    #[test]
    fn make_room_keeps_the_content_and_moves_only_when_short_of_space() {
        let mut buf = BytesMut::with_capacity(64);
        buf.extend_from_slice(b"frame-one|next");
        let frame = buf.split_to(10).freeze();
        make_room(&mut buf, 1000);
        assert_eq!(&buf[..], b"next");
        assert!(buf.capacity() - buf.len() >= 1000);
        assert!(
            frame.is_unique(),
            "the frame split off keeps the old allocation alone"
        );
        assert_eq!(&frame[..], b"frame-one|");
        // Room enough already: the buffer stays where it is.
        let at = buf.as_ptr();
        make_room(&mut buf, 500);
        assert_eq!(buf.as_ptr(), at);
        assert_eq!(&buf[..], b"next");
    }

    #[test]
    fn recv_into_spare_appends_what_arrived_and_reports_empty_and_eof() {
        let (mut peer, local) = UnixStream::pair().unwrap();
        let fd = local.as_raw_fd();
        let mut buf = BytesMut::from(&b"kept"[..]);
        assert!(
            recv_into_spare(fd, &mut buf, 1024).is_none(),
            "nothing waiting"
        );
        assert_eq!(&buf[..], b"kept");

        let sent: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
        peer.write_all(&sent).unwrap();
        // At most `max_bytes` per call, appended after what was there.
        assert_eq!(
            recv_into_spare(fd, &mut buf, 3_000).unwrap().unwrap(),
            3_000
        );
        assert_eq!(buf.len(), 4 + 3_000);
        let mut received = 3_000;
        while received < sent.len() {
            received += recv_into_spare(fd, &mut buf, 64 * 1024).unwrap().unwrap();
        }
        assert_eq!(&buf[..4], b"kept");
        assert_eq!(&buf[4..], &sent[..]);
        assert!(recv_into_spare(fd, &mut buf, 1024).is_none());

        drop(peer);
        assert_eq!(recv_into_spare(fd, &mut buf, 1024).unwrap().unwrap(), 0);
        assert_eq!(buf.len(), 4 + sent.len());
    }
}
