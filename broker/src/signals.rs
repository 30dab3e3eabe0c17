//! SIGTERM/SIGINT: blocked in every thread and received by one signal thread with
//! `sigwait`, which tells each shard through its own Unix socket (a shard awaits one byte).
//! A second SIGINT (Ctrl-C twice) exits at once; repeated SIGTERMs are ignored.

use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::sync::Arc;

use tracing::{info, warn};

fn shutdown_signal_set() -> io::Result<libc::sigset_t> {
    // SAFETY: sigset_t is plain data, initialised by sigemptyset before use.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid sigset_t for these libc calls.
    let rc = unsafe {
        libc::sigemptyset(&mut set)
            | libc::sigaddset(&mut set, libc::SIGINT)
            | libc::sigaddset(&mut set, libc::SIGTERM)
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(set)
}

/// Blocks SIGINT and SIGTERM in the calling thread (and so in threads it spawns later).
pub fn block_shutdown_signals() -> io::Result<()> {
    let set = shutdown_signal_set()?;
    // SAFETY: `set` is initialised; the old mask is not needed.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(())
}

/// Writes one byte to every shard's shutdown socket.
pub fn notify_shutdown(shards: &[OwnedFd]) {
    for fd in shards {
        let mut stream = match fd.try_clone() {
            Ok(clone) => std::os::unix::net::UnixStream::from(clone),
            Err(err) => {
                warn!(error = %err, "cannot notify a shard of shutdown");
                continue;
            }
        };
        // A shard that already stopped has closed its end; that is fine.
        let _ = stream.write_all(&[1]);
    }
}

/// Starts the thread that waits for SIGINT/SIGTERM.
pub fn spawn_signal_thread(shards: Arc<Vec<OwnedFd>>) -> io::Result<()> {
    let set = shutdown_signal_set()?;
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
