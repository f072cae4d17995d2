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
//!
//! Nice values only weigh threads against each other; against another busy
//! process on the machine (a load generator, a sensor decoder) a waking
//! request handler still waited for the running thread's time slice to
//! end, a few milliseconds per hop of a write (request, writer, fsync,
//! answer). So the threads on a write's path, and the hub, also ask for
//! the shortest time slice Linux's EEVDF scheduler grants (0.1 ms, from
//! Linux 6.12; earlier kernels ignore it): a thread with a shorter slice
//! preempts one with a longer slice when it wakes. That needs no
//! privilege, unlike a negative nice value, and changes nothing about how
//! much CPU the thread gets. sled writes its log on threads of its own,
//! which every fsync waits for; no code of ours runs on them, so they are
//! found by name ([`favour_threads_named`]).

/// How far below normal delivery threads run (nice values: 0 is normal,
/// 19 the lowest).
const NICENESS: i32 = 10;

/// The time slice latency-critical threads ask for, in nanoseconds: the
/// shortest the kernel accepts.
#[cfg(target_os = "linux")]
pub(crate) const SHORT_SLICE_NS: u64 = 100_000;

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

/// The kernel's `struct sched_attr`, first version (48 bytes).
#[cfg(target_os = "linux")]
#[repr(C)]
struct SchedAttr {
    size: u32,
    policy: u32,
    flags: u64,
    nice: i32,
    priority: u32,
    runtime: u64,
    deadline: u64,
    period: u64,
}

/// Keep the thread's scheduling policy; change only its parameters.
#[cfg(target_os = "linux")]
const SCHED_FLAG_KEEP_POLICY: u64 = 0x08;

/// Asks for a short time slice for the calling thread, which is on the
/// path of writes (see the module's docs). Its nice value stays as it is.
#[cfg(target_os = "linux")]
pub fn favour_current_thread() {
    if let Err(error) = ask_for_short_slice(rustix::thread::gettid()) {
        tracing::debug!(%error, "cannot ask for a short time slice");
    }
}

/// Asks for a short time slice for every thread of this process whose
/// name starts with `prefix`: threads a dependency started, on the path of
/// writes. Returns how many it found. Threads started later are not
/// covered; call it once they exist.
#[cfg(target_os = "linux")]
pub fn favour_threads_named(prefix: &str) -> usize {
    let threads = threads_named(prefix);
    for (thread, _) in &threads {
        if let Err(error) = ask_for_short_slice(*thread) {
            tracing::debug!(%error, prefix, "cannot ask for a short time slice");
        }
    }
    threads.len()
}

/// The threads of this process whose name starts with `prefix`, with the
/// path of their /proc directory. Empty where /proc cannot be read.
#[cfg(target_os = "linux")]
fn threads_named(prefix: &str) -> Vec<(rustix::process::Pid, std::path::PathBuf)> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter(|task| {
            std::fs::read_to_string(task.path().join("comm"))
                .is_ok_and(|name| name.starts_with(prefix))
        })
        .filter_map(|task| {
            let thread = task.file_name().to_str()?.parse::<i32>().ok()?;
            Some((rustix::process::Pid::from_raw(thread)?, task.path()))
        })
        .collect()
}

#[cfg(not(target_os = "linux"))]
pub fn favour_threads_named(_prefix: &str) -> usize {
    0
}

#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn ask_for_short_slice(thread: rustix::process::Pid) -> std::io::Result<()> {
    let nice = rustix::process::getpriority_process(Some(thread))?;
    let attr = SchedAttr {
        size: std::mem::size_of::<SchedAttr>() as u32,
        policy: 0,
        flags: SCHED_FLAG_KEEP_POLICY,
        nice,
        priority: 0,
        runtime: SHORT_SLICE_NS,
        deadline: 0,
        period: 0,
    };
    // rustix has no sched_setattr. SAFETY: the kernel reads `attr.size`
    // bytes from the pointer, which points at a live, initialised
    // `#[repr(C)]` struct laid out as `struct sched_attr` version 0, and
    // keeps nothing of it after the call; the pid is a thread id, which a
    // thread that has exited makes fail with ESRCH, nothing worse.
    let result = unsafe {
        libc::syscall(
            libc::SYS_sched_setattr,
            libc::pid_t::from(thread.as_raw_nonzero().get()),
            &attr as *const SchedAttr,
            0u32,
        )
    };
    if result == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
pub fn favour_current_thread() {}

/// The time slice of each thread of this process named `prefix...`, as
/// its `sched` file shows it (`None` on kernels before 6.12, which have no
/// per-thread slice), with the thread's name.
#[cfg(all(test, target_os = "linux"))]
pub(crate) fn slices_of_threads_named(prefix: &str) -> Vec<(String, Option<u64>)> {
    threads_named(prefix)
        .into_iter()
        .filter_map(|(_, dir)| {
            let name = std::fs::read_to_string(dir.join("comm")).ok()?;
            let sched = std::fs::read_to_string(dir.join("sched")).ok()?;
            let slice = sched
                .lines()
                .find(|line| line.starts_with("se.slice"))
                .map(|line| {
                    line.rsplit(':')
                        .next()
                        .and_then(|v| v.trim().parse().ok())
                        .expect("a number")
                });
            Some((name.trim().to_string(), slice))
        })
        .collect()
}

/// Whether this process may ask for short slices at all (a sandbox's
/// seccomp filter may refuse the call; the server then runs without).
#[cfg(all(test, target_os = "linux"))]
pub(crate) fn short_slices_allowed() -> bool {
    std::thread::spawn(|| ask_for_short_slice(rustix::thread::gettid()).is_ok())
        .join()
        .unwrap_or(false)
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn the_attr_is_the_kernels_first_version() {
        assert_eq!(std::mem::size_of::<SchedAttr>(), 48);
    }

    #[test]
    fn a_favoured_thread_gets_a_short_slice_and_keeps_its_nice_value() {
        let name = "pbtest-fav-1";
        let favoured = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let thread = rustix::thread::gettid();
                rustix::process::setpriority_process(Some(thread), 3).expect("niced");
                if let Err(error) = ask_for_short_slice(thread) {
                    // A sandbox's seccomp filter may refuse the call; the
                    // server then runs as before.
                    eprintln!("sched_setattr refused here ({error}): nothing to check");
                    return;
                }
                let nice = rustix::process::getpriority_process(Some(thread)).expect("nice");
                assert_eq!(nice, 3);
                let slices = slices_of_threads_named(name);
                assert_eq!(slices.len(), 1);
                assert_eq!(slices[0].1.unwrap_or(SHORT_SLICE_NS), SHORT_SLICE_NS);
            });
        favoured.expect("spawned").join().expect("the thread ran");
    }

    #[test]
    fn threads_are_favoured_by_name() {
        let (started, ready) = std::sync::mpsc::channel();
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let other = std::thread::Builder::new()
            .name("pbtest-fav-2".into())
            .spawn(move || {
                let _ = started.send(());
                let _ = stopped.recv();
            })
            .expect("spawned");
        ready.recv().expect("started");
        let found = favour_threads_named("pbtest-fav-2");
        let slices = slices_of_threads_named("pbtest-fav-2");
        drop(stop);
        other.join().expect("joined");
        assert_eq!(found, 1);
        assert_eq!(slices.len(), 1);
        if !short_slices_allowed() {
            eprintln!("sched_setattr refused here: nothing to check");
            return;
        }
        if let Some(slice) = slices[0].1 {
            assert_eq!(slice, SHORT_SLICE_NS);
        }
    }
}
