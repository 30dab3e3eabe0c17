//! Socket helpers for a stream shared by a connection's reader task and its writers (the
//! `RefCell` is borrowed only inside one poll, never across an await).

use std::cell::RefCell;
use std::io;
use std::pin::Pin;

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
