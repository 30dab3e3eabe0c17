//! One TCP connection to one broker, with pipelined requests.
//!
//! Requests are written in order under a write lock; each gets the next correlation id and a
//! one-shot slot in the `pending` queue. Kafka answers requests on a connection in order, so
//! the reader task pops the queue front for every response and checks its correlation id. At
//! most `max_in_flight` requests wait for answers at once: a caller over the limit waits for a
//! slot (the client's backpressure). Produce with acks=0 gets no answer and takes no slot.
//!
//! On connect the client sends ApiVersions and keeps, per API, the highest version both sides
//! support ([`VersionTable`]).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::net::ToSocketAddrs;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::Duration;

use bytes::{BufMut, Bytes};
use futures_lite::future;
use glommio::net::TcpStream;
use glommio::sync::{Semaphore, StaticPermit};
use glommio::timer::Timer;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, ProduceRequest, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};
use tracing::debug;

use crate::error::{ClientError, KafkaCode};
use crate::frame::{Frame, FrameBuilder, Splice};
use crate::io;
use crate::sync::{oneshot, Receiver, Sender};
use crate::versions::VersionTable;

/// Read buffer for small responses; larger ones are read straight into their own buffer.
const READ_BUFFER_BYTES: usize = 256 << 10;
/// A response longer than this is read into a buffer of its own (no copy out of the ring).
const LARGE_FRAME_BYTES: usize = 64 << 10;

/// Settings of one connection.
#[derive(Debug, Clone)]
pub struct ConnectionConfig {
    /// `client.id` sent in every request header.
    pub client_id: String,
    /// Requests awaiting an answer at once (Kafka's `max.in.flight.requests.per.connection`).
    pub max_in_flight: usize,
    /// How long to wait for an answer.
    pub request_timeout_ms: u64,
    /// How long to wait for the TCP connect.
    pub connect_timeout_ms: u64,
    /// Largest response accepted (a bigger length prefix is a protocol violation).
    pub max_response_bytes: usize,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        Self {
            client_id: "vaart-client".to_owned(),
            max_in_flight: 5,
            request_timeout_ms: 30_000,
            connect_timeout_ms: 10_000,
            max_response_bytes: 256 << 20,
        }
    }
}

struct Pending {
    correlation_id: i32,
    api: ApiKey,
    version: i16,
    reply: Sender<Result<Bytes, ClientError>>,
}

struct Inner {
    addr: String,
    config: ConnectionConfig,
    client_id: StrBytes,
    stream: RefCell<TcpStream>,
    /// Serialises frame writes (a frame may take several `send` calls).
    write_lock: Semaphore,
    in_flight: Rc<Semaphore>,
    pending: RefCell<VecDeque<Pending>>,
    next_correlation_id: Cell<i32>,
    versions: RefCell<VersionTable>,
    /// No new requests: the connection failed or is being closed.
    closing: Cell<bool>,
    /// The reader task closed the descriptor (only it ever does, exactly once).
    fd_closed: Cell<bool>,
    fd: i32,
}

impl Inner {
    /// Stops new requests and shuts the socket down; the reader task then sees EOF, fails
    /// what is pending and closes the descriptor.
    fn shutdown(&self) {
        self.closing.set(true);
        if !self.fd_closed.get() {
            // SAFETY: the descriptor is still open (only the reader closes it, and it sets
            // `fd_closed` first), so it is our socket; shutdown does not invalidate it.
            unsafe {
                libc::shutdown(self.fd, libc::SHUT_RDWR);
            }
        }
    }
}

/// Shuts the socket down when the last [`Connection`] handle goes, so the reader task sees
/// EOF and ends (it holds the only other reference).
struct CloseOnDrop {
    inner: Rc<Inner>,
}

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.inner.shutdown();
    }
}

/// A pipelined connection to one broker. Cheap to clone; the socket is shut down when the last
/// clone is dropped or [`Connection::close`] is called.
#[derive(Clone)]
pub struct Connection {
    inner: Rc<Inner>,
    _guard: Rc<CloseOnDrop>,
}

/// An answer still on its way: await [`PendingReply::response`].
pub struct PendingReply<R: Request> {
    receiver: Receiver<Result<Bytes, ClientError>>,
    _slot: StaticPermit,
    version: i16,
    addr: String,
    timeout_ms: u64,
    _request: std::marker::PhantomData<R>,
}

impl<R: Request> PendingReply<R> {
    /// Waits for the answer (up to the request timeout) and decodes it.
    pub async fn response(self) -> Result<R::Response, ClientError> {
        let api = api_key::<R>();
        let timeout_ms = self.timeout_ms;
        let received = future::or(async { Some(self.receiver.await) }, async {
            Timer::new(Duration::from_millis(timeout_ms)).await;
            None
        })
        .await;
        let mut body = match received {
            None => {
                return Err(ClientError::Timeout {
                    what: "request",
                    timeout_ms,
                })
            }
            Some(None) => return Err(ClientError::ConnectionClosed { addr: self.addr }),
            Some(Some(result)) => result?,
        };
        R::Response::decode(&mut body, self.version)
            .map_err(|error| ClientError::decode(api, self.version, error))
    }
}

fn api_key<R: Request>() -> ApiKey {
    // Every generated request type carries a valid key.
    ApiKey::try_from(R::KEY).unwrap_or(ApiKey::ApiVersions)
}

impl Connection {
    /// Connects to `addr` (`HOST:PORT`) and negotiates API versions.
    pub async fn connect(addr: &str, config: ConnectionConfig) -> Result<Self, ClientError> {
        if config.max_in_flight == 0 {
            return Err(ClientError::InvalidConfig(
                "max_in_flight must be at least 1",
            ));
        }
        let socket_addr = addr
            .to_socket_addrs()
            .map_err(|source| ClientError::InvalidAddress {
                addr: addr.to_owned(),
                source,
            })?
            .next()
            .ok_or_else(|| ClientError::InvalidAddress {
                addr: addr.to_owned(),
                source: std::io::ErrorKind::NotFound.into(),
            })?;
        let stream = TcpStream::connect_timeout(
            socket_addr,
            Duration::from_millis(config.connect_timeout_ms),
        )
        .await
        .map_err(|error| ClientError::Connect {
            addr: addr.to_owned(),
            source: error.into(),
        })?;
        if let Err(error) = stream.set_nodelay(true) {
            debug!(addr, %error, "cannot set TCP_NODELAY");
        }
        let fd = stream.as_raw_fd();
        let max_in_flight = config.max_in_flight as u64;
        let inner = Rc::new(Inner {
            addr: addr.to_owned(),
            client_id: StrBytes::from_string(config.client_id.clone()),
            config,
            stream: RefCell::new(stream),
            write_lock: Semaphore::new(1),
            in_flight: Rc::new(Semaphore::new(max_in_flight)),
            pending: RefCell::new(VecDeque::new()),
            next_correlation_id: Cell::new(1),
            versions: RefCell::new(VersionTable::default()),
            closing: Cell::new(false),
            fd_closed: Cell::new(false),
            fd,
        });
        glommio::spawn_local(read_loop(Rc::clone(&inner))).detach();
        let connection = Connection {
            _guard: Rc::new(CloseOnDrop {
                inner: Rc::clone(&inner),
            }),
            inner,
        };
        connection.negotiate_versions().await?;
        Ok(connection)
    }

    /// `HOST:PORT` this connection goes to.
    pub fn addr(&self) -> &str {
        &self.inner.addr
    }

    /// Whether the connection has failed or been closed.
    pub fn is_closed(&self) -> bool {
        self.inner.closing.get()
    }

    /// The negotiated version of `api`.
    pub fn version(&self, api: ApiKey) -> Result<i16, ClientError> {
        self.inner
            .versions
            .borrow()
            .get(api)
            .ok_or_else(|| ClientError::UnsupportedApi {
                addr: self.inner.addr.clone(),
                api,
            })
    }

    /// Sends `request` at the negotiated version and waits for the answer.
    pub async fn call<R: Request>(&self, request: &R) -> Result<R::Response, ClientError> {
        let version = self.version(api_key::<R>())?;
        self.call_versioned(request, version).await
    }

    /// Sends `request` at `version` and waits for the answer.
    pub async fn call_versioned<R: Request>(
        &self,
        request: &R,
        version: i16,
    ) -> Result<R::Response, ClientError> {
        self.send(request, version).await?.response().await
    }

    /// Waits for an in-flight slot, writes `request`, and returns without waiting for the
    /// answer (pipelining: the next request can be written at once).
    pub async fn send<R: Request>(
        &self,
        request: &R,
        version: i16,
    ) -> Result<PendingReply<R>, ClientError> {
        self.send_spliced(request, version, &[]).await
    }

    /// Writes a request that the broker will not answer (Produce with acks=0).
    pub async fn send_oneway<R: Request>(
        &self,
        request: &R,
        version: i16,
    ) -> Result<(), ClientError> {
        self.write_request(request, version, None, &[]).await
    }

    /// [`Connection::send`] for a Produce request whose record batches go to the socket
    /// straight from their own buffers: each of `splices` names a `records` buffer of the
    /// request and the pieces to send in its place (see [`crate::frame`]). Fails without
    /// writing anything if one of them is not in the request.
    pub async fn send_produce(
        &self,
        request: &ProduceRequest,
        version: i16,
        splices: &[Splice<'_>],
    ) -> Result<PendingReply<ProduceRequest>, ClientError> {
        self.send_spliced(request, version, splices).await
    }

    /// [`Connection::send`], with the buffers in `splice` referenced rather than copied.
    async fn send_spliced<R: Request>(
        &self,
        request: &R,
        version: i16,
        splice: &[Splice<'_>],
    ) -> Result<PendingReply<R>, ClientError> {
        let inner = &self.inner;
        let slot = inner
            .in_flight
            .acquire_static_permit(1)
            .await
            .map_err(|error| ClientError::Runtime(error.into()))?;
        let (reply, receiver) = oneshot();
        self.write_request(request, version, Some(reply), splice)
            .await?;
        Ok(PendingReply {
            receiver,
            _slot: slot,
            version,
            addr: inner.addr.clone(),
            timeout_ms: inner.config.request_timeout_ms,
            _request: std::marker::PhantomData,
        })
    }

    /// [`Connection::send_oneway`] for a Produce request with acks=0, batches placed as in
    /// [`Connection::send_produce`].
    pub async fn send_produce_oneway(
        &self,
        request: &ProduceRequest,
        version: i16,
        splices: &[Splice<'_>],
    ) -> Result<(), ClientError> {
        self.write_request(request, version, None, splices).await
    }

    /// Closes the socket; pending requests fail with `ConnectionClosed`.
    pub fn close(&self) {
        self.inner.shutdown();
    }

    async fn write_request<R: Request>(
        &self,
        request: &R,
        version: i16,
        reply: Option<Sender<Result<Bytes, ClientError>>>,
        splice: &[Splice<'_>],
    ) -> Result<(), ClientError> {
        let inner = &self.inner;
        let api = api_key::<R>();
        if inner.closing.get() {
            return Err(ClientError::ConnectionClosed {
                addr: inner.addr.clone(),
            });
        }
        let correlation_id = inner.next_correlation_id.get();
        inner
            .next_correlation_id
            .set(correlation_id.checked_add(1).unwrap_or(1));
        let frame = encode_frame_spliced(
            api,
            version,
            correlation_id,
            &inner.client_id,
            request,
            splice,
        )?;
        let _write = inner
            .write_lock
            .acquire_permit(1)
            .await
            .map_err(|error| ClientError::Runtime(error.into()))?;
        if inner.closing.get() {
            return Err(ClientError::ConnectionClosed {
                addr: inner.addr.clone(),
            });
        }
        // Queue before writing, under the write lock, so the queue order is the wire order.
        if let Some(reply) = reply {
            inner.pending.borrow_mut().push_back(Pending {
                correlation_id,
                api,
                version,
                reply,
            });
        }
        let written = match frame.segments() {
            [single] => io::write_all(&inner.stream, single.as_ref()).await,
            segments => io::write_segments(&inner.stream, &inner.fd_closed, segments).await,
        };
        if let Err(source) = written {
            // A half-written frame leaves the stream unusable.
            self.close();
            return Err(ClientError::Io {
                addr: inner.addr.clone(),
                source,
            });
        }
        Ok(())
    }

    async fn negotiate_versions(&self) -> Result<(), ClientError> {
        let request = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("vaart-client"))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        let mut response: ApiVersionsResponse = self.call_versioned(&request, 3).await?;
        if KafkaCode(response.error_code) == KafkaCode::UNSUPPORTED_VERSION {
            // An older broker answers v0 and lists its versions; ask again at v0.
            response = self.call_versioned(&request, 0).await?;
        }
        if !KafkaCode(response.error_code).is_ok() {
            return Err(crate::error::KafkaError::new(
                ApiKey::ApiVersions,
                KafkaCode(response.error_code),
            )
            .into());
        }
        *self.inner.versions.borrow_mut() = VersionTable::negotiate(&response.api_keys);
        debug!(addr = %self.inner.addr, apis = response.api_keys.len(), "negotiated API versions");
        Ok(())
    }
}

/// Length prefix + request header + body, encoded by kafka-protocol, in one buffer.
pub fn encode_frame<R: Encodable>(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    client_id: &StrBytes,
    request: &R,
) -> Result<Bytes, ClientError> {
    encode_frame_spliced(api, version, correlation_id, client_id, request, &[])
        .map(|frame| frame.to_bytes())
}

/// Length prefix + request header + body, encoded by kafka-protocol; each of `splice` (a
/// buffer of the request, such as a record batch or its stand-in) is sent as its pieces,
/// referenced by the frame rather than copied. Fails if one of them was not in the request.
pub fn encode_frame_spliced<'a, R: Encodable>(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    client_id: &StrBytes,
    request: &R,
    splice: &'a [Splice<'a>],
) -> Result<Frame<'a>, ClientError> {
    let header = RequestHeader::default()
        .with_request_api_key(api as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(client_id.clone()));
    let header_version = api.request_header_version(version);
    let encode_error = |error| ClientError::encode(api, version, error);
    let size = header
        .compute_size(header_version)
        .map_err(encode_error)?
        .checked_add(request.compute_size(version).map_err(encode_error)?)
        .ok_or(ClientError::InvalidConfig("request too large"))?;
    let size_prefix =
        i32::try_from(size).map_err(|_| ClientError::InvalidConfig("request too large"))?;
    let spliced_bytes: usize = splice.iter().map(|splice| splice.stand_in.len()).sum();
    let mut buf = FrameBuilder::new(splice, (size + 4).saturating_sub(spliced_bytes));
    buf.put_i32(size_prefix);
    header
        .encode(&mut buf, header_version)
        .map_err(encode_error)?;
    request.encode(&mut buf, version).map_err(encode_error)?;
    buf.spliced()
        .map_err(|missed| ClientError::encode(api, version, missed))?;
    let frame = buf.finish();
    // A frame whose length disagrees with its prefix would desynchronise the stream.
    assert_eq!(frame.len_bytes(), size + 4, "request frame length");
    Ok(frame)
}

/// Reads responses until the connection ends, then fails whatever is still pending.
async fn read_loop(inner: Rc<Inner>) {
    let result = read_frames(&inner).await;
    inner.closing.set(true);
    match &result {
        Ok(()) => debug!(addr = %inner.addr, "connection closed by peer"),
        Err(error) => debug!(addr = %inner.addr, %error, "connection failed"),
    }
    let pending: Vec<Pending> = inner.pending.borrow_mut().drain(..).collect();
    for request in pending {
        request.reply.send(Err(ClientError::ConnectionClosed {
            addr: inner.addr.clone(),
        }));
    }
    inner.fd_closed.set(true);
    if let Err(error) = io::close(&inner.stream).await {
        debug!(addr = %inner.addr, %error, "close after read loop failed");
    }
}

async fn read_frames(inner: &Rc<Inner>) -> Result<(), ClientError> {
    let io_error = |source| ClientError::Io {
        addr: inner.addr.clone(),
        source,
    };
    let frame_error = |reason| ClientError::Frame {
        addr: inner.addr.clone(),
        reason,
    };
    let mut data = vec![0u8; READ_BUFFER_BYTES];
    let mut start = 0usize;
    let mut end = 0usize;
    loop {
        // Hand out every complete frame already buffered.
        while let Some(prefix) = data.get(start..start + 4) {
            if start + 4 > end {
                break;
            }
            let length = i32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
            let length = usize::try_from(length).map_err(|_| frame_error("negative length"))?;
            if length > inner.config.max_response_bytes {
                return Err(frame_error("response larger than max_response_bytes"));
            }
            let buffered = end - start - 4;
            if buffered >= length {
                let body = data
                    .get(start + 4..start + 4 + length)
                    .ok_or_else(|| frame_error("frame out of buffer"))?;
                let frame = Bytes::copy_from_slice(body);
                start += 4 + length;
                dispatch(inner, frame)?;
            } else if length > LARGE_FRAME_BYTES {
                // Read the rest straight into the frame's own buffer.
                let mut frame = vec![0u8; length];
                let head = data
                    .get(start + 4..end)
                    .ok_or_else(|| frame_error("frame out of buffer"))?;
                frame[..buffered].copy_from_slice(head);
                start = 0;
                end = 0;
                io::read_exact(&inner.stream, &mut frame[buffered..])
                    .await
                    .map_err(io_error)?;
                dispatch(inner, Bytes::from(frame))?;
            } else {
                break;
            }
        }
        if start == end {
            start = 0;
            end = 0;
        } else if data.len() - end < LARGE_FRAME_BYTES + 4 {
            data.copy_within(start..end, 0);
            end -= start;
            start = 0;
        }
        let read = io::read(&inner.stream, &mut data[end..])
            .await
            .map_err(io_error)?;
        if read == 0 {
            return Ok(());
        }
        end += read;
    }
}

fn dispatch(inner: &Inner, mut frame: Bytes) -> Result<(), ClientError> {
    let pending = inner
        .pending
        .borrow_mut()
        .pop_front()
        .ok_or(ClientError::Frame {
            addr: inner.addr.clone(),
            reason: "response without a request",
        })?;
    let header_version = pending.api.response_header_version(pending.version);
    let header = ResponseHeader::decode(&mut frame, header_version)
        .map_err(|error| ClientError::decode(pending.api, pending.version, error))?;
    if header.correlation_id != pending.correlation_id {
        return Err(ClientError::Frame {
            addr: inner.addr.clone(),
            reason: "correlation id out of order",
        });
    }
    pending.reply.send(Ok(frame));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::RecordsRope;
    use kafka_protocol::messages::MetadataRequest;

    #[test]
    fn frames_decode_back_with_kafka_protocol() {
        let request = MetadataRequest::default().with_topics(None);
        let frame = encode_frame(
            ApiKey::Metadata,
            12,
            42,
            &StrBytes::from_static_str("c"),
            &request,
        )
        .expect("encode");
        let length = i32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]);
        assert_eq!(length as usize, frame.len() - 4);
        let mut body = frame.slice(4..);
        let header =
            kafka_protocol::protocol::decode_request_header_from_buffer(&mut body).expect("header");
        assert_eq!(header.correlation_id, 42);
        assert_eq!(header.request_api_version, 12);
        let decoded = MetadataRequest::decode(&mut body, 12).expect("body");
        assert_eq!(decoded, request);
    }

    fn produce_request(batches: &[(&str, i32, Bytes)]) -> ProduceRequest {
        use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
        use kafka_protocol::messages::TopicName;
        let mut topics: Vec<TopicProduceData> = Vec::new();
        for (topic, partition, records) in batches {
            let data = PartitionProduceData::default()
                .with_index(*partition)
                .with_records(Some(records.clone()));
            match topics.iter_mut().find(|t| t.name.0.as_str() == *topic) {
                Some(existing) => existing.partition_data.push(data),
                None => topics.push(
                    TopicProduceData::default()
                        .with_name(TopicName(StrBytes::from_string((*topic).to_owned())))
                        .with_partition_data(vec![data]),
                ),
            }
        }
        ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(30_000)
            .with_topic_data(topics)
    }

    #[test]
    fn produce_frames_reference_batches_and_equal_the_plain_encoding() {
        let batch = |fill: u8, len: usize| Bytes::from(vec![fill; len]);
        let shapes: Vec<Vec<(&str, i32, Bytes)>> = vec![
            vec![],
            vec![("t", 0, batch(1, 100))],
            vec![("t", 0, batch(1, 5000))],
            vec![
                ("t", 0, batch(1, 5000)),
                ("t", 1, batch(2, 10)),
                ("u", 0, batch(3, 70_000)),
                ("t", 2, batch(4, 1024)),
            ],
        ];
        for shape in &shapes {
            let request = produce_request(shape);
            let registered: Vec<Bytes> = shape
                .iter()
                .filter(|(_, _, batch)| batch.len() >= 1024)
                .map(|(_, _, batch)| batch.clone())
                .collect();
            let ropes: Vec<RecordsRope> = registered
                .iter()
                .cloned()
                .map(RecordsRope::contiguous)
                .collect();
            let splices: Vec<Splice<'_>> = ropes
                .iter()
                .zip(&registered)
                .map(|(rope, batch)| rope.splice(batch))
                .collect();
            for version in [3i16, 7, 8, 9, 11, 12] {
                let client = StrBytes::from_static_str("c");
                let spliced =
                    encode_frame_spliced(ApiKey::Produce, version, 9, &client, &request, &splices)
                        .expect("spliced");
                // Every large batch is referenced, none copied.
                let referenced = spliced
                    .segments()
                    .iter()
                    .filter(|segment| {
                        registered
                            .iter()
                            .any(|b| b.as_ptr() == segment.as_ref().as_ptr())
                    })
                    .count();
                assert_eq!(referenced, registered.len(), "version {version}");
                // The reference: kafka-protocol encoding into a plain BytesMut.
                let header = RequestHeader::default()
                    .with_request_api_key(ApiKey::Produce as i16)
                    .with_request_api_version(version)
                    .with_correlation_id(9)
                    .with_client_id(Some(client.clone()));
                let header_version = ApiKey::Produce.request_header_version(version);
                let mut plain = bytes::BytesMut::new();
                plain.put_i32(0);
                header.encode(&mut plain, header_version).expect("header");
                request.encode(&mut plain, version).expect("request");
                let length = (plain.len() - 4) as i32;
                plain[..4].copy_from_slice(&length.to_be_bytes());
                let plain = plain.freeze();
                assert_eq!(spliced.to_bytes(), plain, "version {version}");
                let contiguous = encode_frame(ApiKey::Produce, version, 9, &client, &request)
                    .expect("contiguous");
                assert_eq!(contiguous, plain, "version {version}");
                let mut body = plain.slice(4..);
                kafka_protocol::protocol::decode_request_header_from_buffer(&mut body)
                    .expect("header");
                let decoded = ProduceRequest::decode(&mut body, version).expect("body");
                assert_eq!(decoded, request, "version {version}");
            }
        }
    }
}
