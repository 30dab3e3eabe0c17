//! Signals: SIGTERM/SIGINT (shut down) and SIGHUP (reload the configuration), blocked in every
//! thread and received by one signal thread with `sigwait`, which tells the shards through
//! their own Unix sockets (a shard reads one byte at a time).
//! A second SIGINT (Ctrl-C twice) exits at once; repeated SIGTERMs are ignored; SIGHUP goes to
//! shard 0, which owns configuration changes, and is ignored once shutdown began.

use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::sync::Arc;

use tracing::{info, warn};

/// Byte a shard reads as "shut down" (EOF means the same).
pub const SHUTDOWN_BYTE: u8 = 1;
/// Byte shard 0 reads as "reload the configuration" (SIGHUP).
pub const RELOAD_BYTE: u8 = 2;

fn handled_signal_set() -> io::Result<libc::sigset_t> {
    // SAFETY: sigset_t is plain data, initialised by sigemptyset before use.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid sigset_t for these libc calls.
    let rc = unsafe {
        libc::sigemptyset(&mut set)
            | libc::sigaddset(&mut set, libc::SIGINT)
            | libc::sigaddset(&mut set, libc::SIGTERM)
            | libc::sigaddset(&mut set, libc::SIGHUP)
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(set)
}

/// Blocks SIGINT, SIGTERM and SIGHUP in the calling thread (and so in threads it spawns later).
pub fn block_shutdown_signals() -> io::Result<()> {
    let set = handled_signal_set()?;
    // SAFETY: `set` is initialised; the old mask is not needed.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(())
}

fn notify(fd: &OwnedFd, byte: u8) {
    match fd.try_clone() {
        Ok(clone) => {
            let mut stream = std::os::unix::net::UnixStream::from(clone);
            // A shard that already stopped has closed its end; that is fine.
            let _ = stream.write_all(&[byte]);
        }
        Err(err) => warn!(error = %err, "cannot notify a shard of a signal"),
    }
}

/// Writes the shutdown byte to every shard's signal socket.
pub fn notify_shutdown(shards: &[OwnedFd]) {
    for fd in shards {
        notify(fd, SHUTDOWN_BYTE);
    }
}

/// Asks shard 0 to reload the configuration.
pub fn notify_reload(shards: &[OwnedFd]) {
    if let Some(owner) = shards.first() {
        notify(owner, RELOAD_BYTE);
    }
}

/// Starts the thread that waits for SIGINT/SIGTERM/SIGHUP.
pub fn spawn_signal_thread(shards: Arc<Vec<OwnedFd>>) -> io::Result<()> {
    let set = handled_signal_set()?;
    std::thread::Builder::new()
        .name("vaart-signals".to_string())
        .spawn(move || {
            let mut received = 0u32;
            loop {
                let mut signal: libc::c_int = 0;
                // SAFETY: `set` is initialised and `signal` is a valid out pointer.
                let rc = unsafe { libc::sigwait(&set, &mut signal) };
                if rc != 0 {
                    warn!(error = %io::Error::from_raw_os_error(rc), "sigwait failed");
                    continue;
                }
                if signal == libc::SIGHUP {
                    if received == 0 {
                        info!("received SIGHUP: reloading the configuration");
                        notify_reload(&shards);
                    } else {
                        info!("received SIGHUP while shutting down: ignored");
                    }
                    continue;
                }
                received += 1;
                let name = if signal == libc::SIGTERM { "SIGTERM" } else { "SIGINT" };
                if received == 1 {
                    info!("received {name}: stopping (finishing in-flight requests, flushing logs)");
                    notify_shutdown(&shards);
                } else if signal == libc::SIGINT {
                    warn!("received SIGINT again: exiting immediately");
                    std::process::exit(130);
                } else {
                    // Supervisors (timeout, systemd, process-group kills) often deliver
                    // SIGTERM twice; only a repeated Ctrl-C forces an immediate exit.
                    info!("received {name} again: already shutting down (send SIGINT twice or SIGKILL to force)");
                }
            }
        })?;
    Ok(())
}
