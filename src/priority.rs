//! Thread priorities: realtime delivery yields the cores to requests,
//! writes and fsyncs when they compete.
//!
//! With fan-out and HTTP in one run queue, a write request waited behind a
//! thousand connection tasks: at 1000 subscribers and 1000 writes a second
//! the write p50 went from under a millisecond to 17 ms. The connection
//! runtime's threads, which write events to sockets, run at a lower
//! priority (nice 10), so when the cores are busy the kernel runs request
//! handlers, the writer and the flusher first; delivery takes what is
//! left, which is most of the machine, as writes are cheap. With idle
//! cores nothing changes. The hub thread keeps normal priority: it is one
//! thread that every delivery goes through, and lowering it made both
//! write and delivery latency worse.

/// How far below normal delivery threads run (nice values: 0 is normal,
/// 19 the lowest).
const NICENESS: i32 = 10;

/// Lowers the calling thread's priority to that of delivery threads.
#[cfg(target_os = "linux")]
pub fn lower_current_thread() {
    // On Linux the nice value belongs to the thread, and PRIO_PROCESS
    // with a thread id sets just that thread's.
    let thread = rustix::thread::gettid();
    if let Err(error) = rustix::process::setpriority_process(Some(thread), NICENESS) {
        tracing::debug!(%error, "cannot lower a delivery thread's priority");
    }
}

#[cfg(not(target_os = "linux"))]
pub fn lower_current_thread() {}
