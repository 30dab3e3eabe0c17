//! Socket I/O helpers for a connection whose stream is shared by its reader and writer
//! tasks, and the vectored write that sends a response straight from its parts.
//!
//! glommio's sockets are blocking fds (RUNTIME-NOTES pitfall 2): raw syscalls here always pass
//! `MSG_DONTWAIT`, and when the socket buffer is full we fall back to glommio's own write
//! path, which waits for writability through io_uring without blocking the shard.

use std::cell::RefCell;
use std::io;
use std::os::fd::AsRawFd;
use std::pin::Pin;

use futures_lite::future::poll_fn;
use futures_lite::{AsyncRead, AsyncWrite};
use glommio::net::TcpStream;

/// Most iovecs passed to one `sendmsg` (well under IOV_MAX = 1024).
const MAX_IOVECS_PER_CALL: usize = 256;

/// Reads into `buf` (one `recv`).
pub async fn read(stream: &RefCell<TcpStream>, buf: &mut [u8]) -> io::Result<usize> {
    poll_fn(|cx| Pin::new(&mut *stream.borrow_mut()).poll_read(cx, buf)).await
}

/// Writes some of `buf`, waiting for writability if needed.
pub async fn write(stream: &RefCell<TcpStream>, buf: &[u8]) -> io::Result<usize> {
    poll_fn(|cx| Pin::new(&mut *stream.borrow_mut()).poll_write(cx, buf)).await
}

/// Closes the socket (flushes nothing; glommio has no write buffer here).
pub async fn close(stream: &RefCell<TcpStream>) -> io::Result<()> {
    poll_fn(|cx| Pin::new(&mut *stream.borrow_mut()).poll_close(cx)).await
}

/// Writes every byte of `parts`, in order, with as few `sendmsg` calls as the socket buffer
/// allows. The parts are sent from where they are (no copy into a response buffer).
pub async fn write_all_vectored(stream: &RefCell<TcpStream>, parts: &[&[u8]]) -> io::Result<()> {
    let fd = stream.borrow().as_raw_fd();
    let mut index = 0usize;
    let mut offset = 0usize;
    let mut iovecs: Vec<libc::iovec> = Vec::with_capacity(MAX_IOVECS_PER_CALL.min(parts.len()));
    loop {
        // Skip finished and empty parts.
        while let Some(part) = parts.get(index) {
            if offset < part.len() {
                break;
            }
            index += 1;
            offset = 0;
        }
        let Some(first) = parts.get(index) else {
            return Ok(());
        };
        iovecs.clear();
        for (i, part) in parts
            .iter()
            .enumerate()
            .skip(index)
            .take(MAX_IOVECS_PER_CALL)
        {
            let start = if i == index { offset } else { 0 };
            let Some(rest) = part.get(start..) else {
                continue;
            };
            if rest.is_empty() {
                continue;
            }
            iovecs.push(libc::iovec {
                iov_base: rest.as_ptr() as *mut libc::c_void,
                iov_len: rest.len(),
            });
        }
        // SAFETY: msghdr is plain old data; zeroed means no name and no control data.
        let mut message: libc::msghdr = unsafe { std::mem::zeroed() };
        message.msg_iov = iovecs.as_mut_ptr();
        message.msg_iovlen = iovecs.len();
        // SAFETY: every iovec points into a slice borrowed from `parts`, alive for this call;
        // the kernel only reads from them. MSG_DONTWAIT keeps the blocking fd from blocking.
        let sent = unsafe { libc::sendmsg(fd, &message, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
        let mut advance = if sent >= 0 {
            usize::try_from(sent).unwrap_or(0)
        } else {
            let err = io::Error::last_os_error();
            match err.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock => {
                    // Socket buffer full: let glommio wait for room and write part of the
                    // current slice; then go back to vectored writes.
                    let rest = first.get(offset..).unwrap_or_default();
                    let written = write(stream, rest).await?;
                    if written == 0 {
                        return Err(io::ErrorKind::WriteZero.into());
                    }
                    written
                }
                _ => return Err(err),
            }
        };
        if advance == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        while advance > 0 {
            let Some(part) = parts.get(index) else {
                break;
            };
            let left = part.len().saturating_sub(offset);
            if advance >= left {
                advance -= left;
                index += 1;
                offset = 0;
            } else {
                offset += advance;
                advance = 0;
            }
        }
    }
}
