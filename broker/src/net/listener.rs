//! Listening sockets, created before the shards start: one per shard, all bound to the same
//! address with SO_REUSEPORT so the kernel spreads connections over the shards. Binding in
//! the main thread reports "address in use" before anything starts, and lets `--listen
//! HOST:0` pick one free port that every shard then shares.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use thiserror::Error;

/// Listen backlog per socket.
const LISTEN_BACKLOG: i32 = 1024;
/// How long a start waits for a port another socket listens on. A process killed a moment
/// ago can hold its listening sockets for a few milliseconds after it exits (its io_uring
/// rings are torn down afterwards); a broker still running holds it for good.
const PORT_IN_USE_WAIT: Duration = Duration::from_secs(2);
/// Pause between two checks of a port in use.
const PORT_IN_USE_RETRY: Duration = Duration::from_millis(20);

/// Why the listen address could not be bound.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ListenError {
    /// The host name did not resolve.
    #[error("cannot resolve listen address {address}: {source}")]
    Resolve {
        /// Address as configured.
        address: String,
        /// Cause.
        source: io::Error,
    },
    /// The host resolved to nothing.
    #[error("listen address {0} resolves to no address")]
    NoAddress(String),
    /// Another socket listens on the address (another broker, or any other program).
    #[error("listen address {0} is in use: another process listens on it")]
    InUse(SocketAddr),
    /// A socket call failed.
    #[error("{op} {address}: {source}")]
    Socket {
        /// Which call.
        op: &'static str,
        /// Address.
        address: SocketAddr,
        /// Cause.
        source: io::Error,
    },
}

/// Resolves `host:port` to the first socket address.
pub fn resolve(address: &str) -> Result<SocketAddr, ListenError> {
    address
        .to_socket_addrs()
        .map_err(|source| ListenError::Resolve {
            address: address.to_string(),
            source,
        })?
        .next()
        .ok_or_else(|| ListenError::NoAddress(address.to_string()))
}

/// Binds `count` listening sockets to `address` (SO_REUSEADDR + SO_REUSEPORT). If the port is
/// 0, the first socket picks a free port and the rest bind that port. Returns the sockets and
/// the bound address.
pub fn bind_reuseport(
    address: SocketAddr,
    count: usize,
) -> Result<(Vec<OwnedFd>, SocketAddr), ListenError> {
    if address.port() != 0 {
        wait_until_free(address)?;
    }
    let mut sockets = Vec::with_capacity(count);
    let mut bound = address;
    for _ in 0..count.max(1) {
        let socket = bind_one(bound)?;
        if bound.port() == 0 {
            bound = local_addr(&socket).map_err(socket_error("getsockname", address))?;
        }
        sockets.push(socket);
    }
    Ok((sockets, bound))
}

/// SO_REUSEPORT lets any socket of the same user join a port's group, so a second broker
/// started on a port a running one listens on would share its connections instead of failing.
/// A socket bound without SO_REUSEPORT cannot join that group: if it cannot bind, someone
/// listens there. (Ports in TIME_WAIT do not count: the check sets SO_REUSEADDR, as the real
/// sockets do.)
fn wait_until_free(address: SocketAddr) -> Result<(), ListenError> {
    let deadline = Instant::now() + PORT_IN_USE_WAIT;
    loop {
        match new_socket(address).and_then(|socket| {
            set_flag(&socket, libc::SOL_SOCKET, libc::SO_REUSEADDR)
                .map_err(socket_error("setsockopt SO_REUSEADDR", address))?;
            bind_to(&socket, address)
        }) {
            Ok(()) => return Ok(()),
            Err(ListenError::Socket {
                op: "bind", source, ..
            }) if source.raw_os_error() == Some(libc::EADDRINUSE) => {
                if Instant::now() >= deadline {
                    return Err(ListenError::InUse(address));
                }
                std::thread::sleep(PORT_IN_USE_RETRY);
            }
            Err(err) => return Err(err),
        }
    }
}

/// Maps an error of socket call `op` on `address`.
fn socket_error(op: &'static str, address: SocketAddr) -> impl Fn(io::Error) -> ListenError {
    move |source| ListenError::Socket {
        op,
        address,
        source,
    }
}

fn new_socket(address: SocketAddr) -> Result<OwnedFd, ListenError> {
    let domain = match address {
        SocketAddr::V4(_) => libc::AF_INET,
        SocketAddr::V6(_) => libc::AF_INET6,
    };
    // SAFETY: plain socket(2) call; the result is checked before use.
    let fd = unsafe { libc::socket(domain, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(socket_error("socket", address)(io::Error::last_os_error()));
    }
    // SAFETY: `fd` is a fresh, valid socket descriptor owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn bind_to(socket: &OwnedFd, address: SocketAddr) -> Result<(), ListenError> {
    let (storage, len) = to_sockaddr(address);
    // SAFETY: `storage` holds a valid sockaddr of `len` bytes for this address family.
    let rc = unsafe {
        libc::bind(
            socket.as_raw_fd(),
            (&storage as *const libc::sockaddr_storage).cast(),
            len,
        )
    };
    if rc != 0 {
        return Err(socket_error("bind", address)(io::Error::last_os_error()));
    }
    Ok(())
}

fn bind_one(address: SocketAddr) -> Result<OwnedFd, ListenError> {
    let fail = |op| socket_error(op, address);
    let socket = new_socket(address)?;
    set_flag(&socket, libc::SOL_SOCKET, libc::SO_REUSEADDR)
        .map_err(fail("setsockopt SO_REUSEADDR"))?;
    set_flag(&socket, libc::SOL_SOCKET, libc::SO_REUSEPORT)
        .map_err(fail("setsockopt SO_REUSEPORT"))?;
    bind_to(&socket, address)?;
    // SAFETY: listen(2) on a bound socket we own.
    if unsafe { libc::listen(socket.as_raw_fd(), LISTEN_BACKLOG) } != 0 {
        return Err(fail("listen")(io::Error::last_os_error()));
    }
    Ok(socket)
}

fn set_flag(socket: &OwnedFd, level: i32, option: i32) -> io::Result<()> {
    let one: libc::c_int = 1;
    // SAFETY: passes a pointer to a live c_int and its exact size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            option,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn to_sockaddr(address: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    match address {
        SocketAddr::V4(v4) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: v4.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(v4.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and suitably aligned for sockaddr_in.
            unsafe {
                std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin);
            }
            (
                storage,
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        }
        SocketAddr::V6(v6) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: v6.port().to_be(),
                sin6_flowinfo: v6.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: v6.ip().octets(),
                },
                sin6_scope_id: v6.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than and suitably aligned for sockaddr_in6.
            unsafe {
                std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin6);
            }
            (
                storage,
                std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
            )
        }
    }
}

fn local_addr(socket: &OwnedFd) -> io::Result<SocketAddr> {
    // The listener is a TCP socket; borrow it as a std listener just to ask its address.
    let std_listener = std::net::TcpListener::from(socket.try_clone()?);
    std_listener.local_addr()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_zero_binds_one_shared_port() {
        let address = resolve("127.0.0.1:0").expect("resolve");
        let (sockets, bound) = bind_reuseport(address, 3).expect("bind");
        assert_eq!(sockets.len(), 3);
        assert_ne!(bound.port(), 0);
        for socket in &sockets {
            assert_eq!(local_addr(socket).expect("addr"), bound);
        }
        // A client can connect.
        std::net::TcpStream::connect(bound).expect("connect");
    }

    #[test]
    fn address_in_use_by_a_non_reuseport_socket_is_an_error() {
        let plain = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let taken = plain.local_addr().expect("addr");
        assert!(matches!(
            bind_reuseport(taken, 1),
            Err(ListenError::InUse(address)) if address == taken
        ));
    }

    #[test]
    fn a_second_reuseport_group_on_a_port_in_use_is_an_error() {
        let address = resolve("127.0.0.1:0").expect("resolve");
        let (_first, bound) = bind_reuseport(address, 2).expect("bind");
        assert!(matches!(
            bind_reuseport(bound, 2),
            Err(ListenError::InUse(address)) if address == bound
        ));
    }

    #[test]
    fn a_port_freed_while_waiting_is_taken() {
        let address = resolve("127.0.0.1:0").expect("resolve");
        let (first, bound) = bind_reuseport(address, 1).expect("bind");
        let freeing = std::thread::spawn(move || {
            std::thread::sleep(PORT_IN_USE_RETRY * 3);
            drop(first);
        });
        let (second, again) = bind_reuseport(bound, 1).expect("bind after the port is freed");
        assert_eq!((second.len(), again), (1, bound));
        freeing.join().expect("the freeing thread");
    }

    #[test]
    fn ipv6_loopback_binds_if_available() {
        if let Ok(address) = resolve("[::1]:0") {
            let _ = bind_reuseport(address, 2);
        }
    }
}
