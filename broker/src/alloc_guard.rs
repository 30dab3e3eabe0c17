//! A global allocator wrapper that keeps a hostile length prefix from aborting the broker.
//!
//! kafka-protocol 0.18 decodes an array by calling `Vec::with_capacity(n)` with the element
//! count read from the wire, before decoding any element (upstream PRs #152/#161/#200 are
//! still open). An 8-byte request claiming 2^31 topics asks for ~150 GB up front; the
//! allocator refuses and Rust aborts the process — any client could kill the broker.
//!
//! The guard serves allocations of [`HUGE_ALLOCATION_BYTES`] or more with an anonymous
//! `mmap(MAP_NORESERVE)`: address space only, no memory is committed until touched. The
//! decoder then fails on the missing bytes and frees it. Real memory use still follows the
//! bytes actually decoded, which `socket.request.max.bytes` bounds. Smaller allocations go
//! to the system allocator unchanged. (With `vm.overcommit_memory=2`, MAP_NORESERVE is not
//! honoured; there the guard cannot help and the kernel setting should be left at 0.)
//!
//! Installed by the `vaart` binary (`#[global_allocator]` in `main.rs`) and by this crate's
//! unit tests, which decode arbitrary bytes.

use std::alloc::{GlobalAlloc, Layout};

use std::alloc::System;

/// Allocations at least this large are mapped lazily.
pub const HUGE_ALLOCATION_BYTES: usize = 256 * 1024 * 1024;
const PAGE_BYTES: usize = 4096;

/// The allocator; see the module docs.
pub struct GuardedAlloc;

fn is_huge(layout: Layout) -> bool {
    layout.size() >= HUGE_ALLOCATION_BYTES && layout.align() <= PAGE_BYTES
}

fn map_lazily(size: usize) -> *mut u8 {
    // SAFETY: an anonymous private mapping with no fixed address; the kernel picks the range.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        std::ptr::null_mut()
    } else {
        ptr.cast()
    }
}

// SAFETY: every method either forwards to `System` with the same layout, or uses a private
// anonymous mapping of exactly `layout.size()` bytes (page-aligned, so any align <= 4096 is
// met, and zero-filled), released with munmap of the same size. Which path an allocation took
// is a pure function of its layout, so dealloc/realloc always pick the matching release.
unsafe impl GlobalAlloc for GuardedAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_huge(layout) {
            map_lazily(layout.size())
        } else {
            // SAFETY: forwarded with the caller's (valid, non-zero-size) layout.
            unsafe { System.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_huge(layout) {
            // Anonymous mappings are zero-filled.
            map_lazily(layout.size())
        } else {
            // SAFETY: forwarded with the caller's layout.
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if is_huge(layout) {
            // SAFETY: `ptr` came from `map_lazily(layout.size())` (same layout => same path).
            unsafe {
                libc::munmap(ptr.cast(), layout.size());
            }
        } else {
            // SAFETY: `ptr` came from System with this layout.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees `new_size`, rounded to `layout.align()`, fits isize.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        match (is_huge(layout), is_huge(new_layout)) {
            // SAFETY: both sides belong to System.
            (false, false) => unsafe { System.realloc(ptr, layout, new_size) },
            _ => {
                // SAFETY: allocation, copy of the overlapping prefix, and release each use the
                // path matching their layout; the regions do not overlap.
                unsafe {
                    let new_ptr = self.alloc(new_layout);
                    if !new_ptr.is_null() {
                        std::ptr::copy_nonoverlapping(ptr, new_ptr, layout.size().min(new_size));
                        self.dealloc(ptr, layout);
                    }
                    new_ptr
                }
            }
        }
    }
}

/// How often [`spawn_memory_trimmer`] looks at whether the broker went idle.
pub const MEMORY_TRIM_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// The broker counts as idle over an interval in which it used less than this share of one
/// core (all its threads together).
const TRIM_IDLE_CPU_SHARE: f64 = 0.05;
/// An idle broker is trimmed again after this many intervals even without busy ones between
/// (light traffic under the idle share still frees memory now and then).
const TRIM_IDLE_REPEAT_INTERVALS: u32 = 12;

/// When to hand freed memory back: after the broker has been busy and then went idle, never
/// while it is busy. Under load a trim only hurts: it holds each arena's lock while it walks
/// the free chunks, and the pages it releases are faulted back in (and zeroed) by the next
/// requests.
#[derive(Debug, Default)]
struct TrimPolicy {
    busy_since_trim: bool,
    idle_intervals_since_trim: u32,
}

impl TrimPolicy {
    /// Called once per interval with the CPU time the process used in it.
    fn should_trim(
        &mut self,
        cpu_used: std::time::Duration,
        interval: std::time::Duration,
    ) -> bool {
        if cpu_used.as_secs_f64() >= interval.as_secs_f64() * TRIM_IDLE_CPU_SHARE {
            self.busy_since_trim = true;
            return false;
        }
        self.idle_intervals_since_trim = self.idle_intervals_since_trim.saturating_add(1);
        if self.busy_since_trim || self.idle_intervals_since_trim >= TRIM_IDLE_REPEAT_INTERVALS {
            self.busy_since_trim = false;
            self.idle_intervals_since_trim = 0;
            return true;
        }
        false
    }
}

/// Largest allocation glibc serves from its arenas rather than with its own `mmap`.
const MMAP_THRESHOLD_BYTES: libc::c_int = 4 << 20;
/// Free memory at the top of an arena that glibc keeps instead of returning it on `free`.
const TRIM_THRESHOLD_BYTES: libc::c_int = 1 << 30;

/// Sets glibc's allocation thresholds for a broker; call once at startup, before the shards
/// start.
///
/// glibc serves allocations above a threshold (128 KiB at first, raised as such blocks are
/// freed) with their own `mmap`, and returns free memory at the top of an arena on `free`
/// once it exceeds twice that. Request buffers are 16 KiB to 1 MiB, allocated and freed
/// thousands of times a second: with the defaults many of them cost an `mmap`, page faults
/// (and zeroing) on first touch and a `munmap`, or a trim and the faults again. With buffers
/// up to 4 MiB served from the arenas and no trimming on `free` (the memory trimmer hands
/// free memory back once the broker is idle), open-loop produce at 830,000 msgs/s had its
/// p99 at 1.6-3.4 ms against 3.9-6.0 ms without, in 4 alternating pairs of runs (and
/// 2.8-3.3 against 4.0-4.7 ms in 3 pairs with `GLIBC_TUNABLES` set to the same values).
/// Elsewhere than glibc this does nothing.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; called before other threads allocate.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES);
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES);
    }
}

/// CPU time (user + system) of the whole process so far; None if the kernel refuses.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn process_cpu_time() -> Option<std::time::Duration> {
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage only writes into the struct we own for the duration of the call.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return None;
    }
    let micros = |time: libc::timeval| {
        u64::try_from(time.tv_sec).unwrap_or(0) * 1_000_000
            + u64::try_from(time.tv_usec).unwrap_or(0)
    };
    Some(std::time::Duration::from_micros(
        micros(usage.ru_utime) + micros(usage.ru_stime),
    ))
}

/// Starts a thread that returns the allocator's free memory to the kernel once the broker
/// goes idle (checked every `interval`, see [`TrimPolicy`]).
///
/// glibc keeps memory freed by the shards in its arenas: after a burst (10,000 partitions
/// produced at full rate hold ~1.3 GB of request buffers while their writes are queued) the
/// broker stayed at 1.5-1.8 GB resident once idle, although only a few hundred MB were
/// still allocated. `malloc_trim(0)` releases the free pages of every arena with
/// `MADV_DONTNEED`. It runs on its own thread so no shard calls it, and only when the broker
/// is idle. Elsewhere than glibc this does nothing. Call it after the shutdown signals are
/// blocked: the thread inherits the mask, and a thread that does not block SIGTERM would let
/// the default action kill the broker (see `signals`).
pub fn spawn_memory_trimmer(interval: std::time::Duration) -> std::io::Result<()> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        std::thread::Builder::new()
            .name("vaart-trim".to_string())
            .spawn(move || {
                let mut policy = TrimPolicy::default();
                let mut last_cpu = process_cpu_time();
                loop {
                    std::thread::sleep(interval);
                    let cpu = process_cpu_time();
                    // Unknown CPU time counts as busy: never trim blindly under load.
                    let used = match (cpu, last_cpu) {
                        (Some(now), Some(before)) => now.saturating_sub(before),
                        _ => interval,
                    };
                    last_cpu = cpu;
                    if policy.should_trim(used, interval) {
                        // SAFETY: malloc_trim has no preconditions; it only inspects the
                        // allocator's own state under the arenas' locks.
                        unsafe {
                            libc::malloc_trim(0);
                        }
                    }
                }
            })?;
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = interval;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_is_trimmed_once_the_broker_goes_idle_and_never_while_busy() {
        let interval = std::time::Duration::from_secs(5);
        let busy = std::time::Duration::from_secs(2);
        let idle = std::time::Duration::from_millis(10);
        let mut policy = TrimPolicy::default();
        let decisions: Vec<bool> = [busy, busy, idle, idle, busy, idle]
            .into_iter()
            .map(|used| policy.should_trim(used, interval))
            .collect();
        assert_eq!(decisions, [false, false, true, false, false, true]);
        // Idle all along: trimmed again only every TRIM_IDLE_REPEAT_INTERVALS intervals.
        let mut policy = TrimPolicy::default();
        let trims = (0..3 * TRIM_IDLE_REPEAT_INTERVALS)
            .filter(|_| policy.should_trim(idle, interval))
            .count();
        assert_eq!(trims, 3);
    }

    #[test]
    fn absurd_capacity_does_not_abort() {
        // ~100 GB of address space, never touched.
        let v: Vec<[u64; 16]> = Vec::with_capacity(100 * 1024 * 1024 * 1024 / 128);
        assert!(v.capacity() > 0);
        drop(v);
    }

    #[test]
    fn growth_across_the_threshold_keeps_contents() {
        let mut v: Vec<u8> = vec![7u8; 1024];
        v.reserve(HUGE_ALLOCATION_BYTES);
        assert_eq!(v.len(), 1024);
        assert!(v.iter().all(|&b| b == 7));
        v.shrink_to_fit();
        assert!(v.iter().all(|&b| b == 7));
    }
}
