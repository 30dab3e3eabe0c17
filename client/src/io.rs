//! Socket helpers for a stream shared by a connection's reader task and its writers (the
//! `RefCell` is borrowed only inside one poll, never across an await).

use std::cell::{Cell, RefCell};
use std::io;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::task::Poll;

use futures_lite::future::poll_fn;
use futures_lite::{AsyncRead, AsyncWrite};
use glommio::net::TcpStream;

/// Reads into `buf` (one `recv`); 0 means the peer closed.
pub async fn read(stream: &RefCell<TcpStream>, buf: &mut [u8]) -> io::Result<usize> {
    poll_fn(|cx| Pin::new(&mut *stream.borrow_mut()).poll_read(cx, buf)).await
}

/// Writes all of `buf`.
pub async fn write_all(stream: &RefCell<TcpStream>, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        let written = poll_fn(|cx| Pin::new(&mut *stream.borrow_mut()).poll_write(cx, buf)).await?;
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        buf = buf.get(written..).unwrap_or_default();
    }
    Ok(())
}

/// Reads exactly `buf.len()` bytes.
pub async fn read_exact(stream: &RefCell<TcpStream>, mut buf: &mut [u8]) -> io::Result<()> {
    while !buf.is_empty() {
        let read = read(stream, buf).await?;
        if read == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let rest = std::mem::take(&mut buf);
        buf = rest.get_mut(read..).unwrap_or_default();
    }
    Ok(())
}

/// Closes the socket so the peer sees EOF now (glommio closes fds lazily otherwise).
pub async fn close(stream: &RefCell<TcpStream>) -> io::Result<()> {
    poll_fn(|cx| Pin::new(&mut *stream.borrow_mut()).poll_close(cx)).await
}

/// Most segments handed to one `sendmsg` (Linux's `IOV_MAX`).
const IOVECS_MAX: usize = 1024;

/// Writes all of `segments`, in order, with vectored `sendmsg` calls. `fd_closed` is the
/// connection's flag that its reader task closed the descriptor; it is checked right before
/// every call, in the same poll, so the raw descriptor is never used after its close.
pub async fn write_segments(
    stream: &RefCell<TcpStream>,
    fd_closed: &Cell<bool>,
    segments: &[impl AsRef<[u8]>],
) -> io::Result<()> {
    // Position: the segment being written and how much of it is already out.
    let mut index = 0usize;
    let mut written_in_segment = 0usize;
    let mut iovecs: Vec<libc::iovec> = Vec::with_capacity(segments.len().min(IOVECS_MAX));
    while let Some(current) = segments.get(index) {
        let current = current.as_ref();
        if written_in_segment >= current.len() {
            index += 1;
            written_in_segment = 0;
            continue;
        }
        let first = current.get(written_in_segment..).unwrap_or_default();
        let rest = segments.get(index + 1..).unwrap_or_default();
        let written = poll_fn(|cx| {
            if fd_closed.get() {
                return Poll::Ready(Err(io::ErrorKind::NotConnected.into()));
            }
            iovecs.clear();
            for slice in std::iter::once(first)
                .chain(rest.iter().map(|segment| segment.as_ref()))
                .take(IOVECS_MAX)
            {
                iovecs.push(libc::iovec {
                    iov_base: slice.as_ptr() as *mut libc::c_void,
                    iov_len: slice.len(),
                });
            }
            // SAFETY: all-zero is a valid `msghdr` (no address, no control data).
            let mut message: libc::msghdr = unsafe { std::mem::zeroed() };
            message.msg_iov = iovecs.as_mut_ptr();
            message.msg_iovlen = iovecs.len();
            let fd = stream.borrow().as_raw_fd();
            // SAFETY: `fd` is the stream's open socket (`fd_closed` is false and the stream is
            // borrowed from its owner); every iovec points into a live `Bytes` that outlives
            // the call; the kernel only reads them.
            let sent =
                unsafe { libc::sendmsg(fd, &message, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
            if let Ok(sent) = usize::try_from(sent) {
                return Poll::Ready(Ok(sent));
            }
            let error = io::Error::last_os_error();
            match error.kind() {
                // The socket buffer is full: glommio's own write waits for it to drain (and
                // writes the first piece if it already has).
                io::ErrorKind::WouldBlock => {
                    Pin::new(&mut *stream.borrow_mut()).poll_write(cx, first)
                }
                io::ErrorKind::Interrupted => {
                    cx.waker().wake_by_ref();
                    Poll::Pending
                }
                _ => Poll::Ready(Err(error)),
            }
        })
        .await?;
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        // Advance past what was written.
        let mut left = written;
        while let Some(segment) = segments.get(index) {
            let available = segment.as_ref().len() - written_in_segment;
            if left < available {
                written_in_segment += left;
                break;
            }
            left -= available;
            index += 1;
            written_in_segment = 0;
        }
    }
    Ok(())
}
