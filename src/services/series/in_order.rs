//! Preparing items on several threads and consuming them in order: the
//! aggregate decodes blocks on every core while one aggregator adds them
//! in seq order, so the answer is bit for bit the sequential one (float
//! sums depend on the order of the additions).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

/// Items prepared ahead of the consumer, per thread: bounds the memory of
/// decoded blocks when consuming is the slower side.
const AHEAD_PER_THREAD: usize = 4;

/// Calls `produce(i)` for every `i < n`, on the calling thread and on up
/// to `threads - 1` helpers, and `consume` on each result in the order of
/// `i`. Returns the first error in that order, of either; the remaining
/// items are not produced once the helpers notice.
pub fn in_order<T, E>(
    n: usize,
    threads: usize,
    produce: impl Fn(usize) -> Result<T, E> + Sync,
    mut consume: impl FnMut(T) -> Result<(), E>,
) -> Result<(), E>
where
    T: Send,
    E: Send,
{
    let helpers = threads.saturating_sub(1).min(n.saturating_sub(1));
    if helpers == 0 {
        for i in 0..n {
            consume(produce(i)?)?;
        }
        return Ok(());
    }
    let window = AHEAD_PER_THREAD * (helpers + 1);
    let next = AtomicUsize::new(0);
    let consumed = AtomicUsize::new(0);
    // Set when the consumer is done, at the end or at an error.
    let stop = AtomicBool::new(false);
    // The next item, if it is within the window past the consumer.
    let claim = || loop {
        let i = next.load(Ordering::Acquire);
        if i >= n || i >= consumed.load(Ordering::Acquire) + window {
            return None;
        }
        if next
            .compare_exchange(i, i + 1, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            return Some(i);
        }
    };
    std::thread::scope(|scope| {
        let (tx, rx) = mpsc::channel::<(usize, Result<T, E>)>();
        for _ in 0..helpers {
            let tx = tx.clone();
            let (produce, claim, stop) = (&produce, &claim, &stop);
            scope.spawn(move || loop {
                if stop.load(Ordering::Acquire) {
                    break;
                }
                match claim() {
                    // A closed channel: the consumer stopped, at an error.
                    Some(i) => {
                        if tx.send((i, produce(i))).is_err() {
                            break;
                        }
                    }
                    // Far enough ahead: the consumer is the slower side.
                    None => std::thread::sleep(Duration::from_micros(100)),
                }
            });
        }
        drop(tx);
        let mut run = || -> Result<(), E> {
            // Items prepared out of order wait here for their turn; an error
            // too, so the one reported is the first in order.
            let mut ready: Vec<Option<Result<T, E>>> = (0..n).map(|_| None).collect();
            let mut want = 0;
            while want < n {
                while let Ok((i, item)) = rx.try_recv() {
                    ready[i] = Some(item);
                }
                if let Some(item) = ready[want].take() {
                    consume(item?)?;
                    want += 1;
                    consumed.store(want, Ordering::Release);
                    continue;
                }
                // Rather than wait, prepare the next unclaimed item here.
                if let Some(i) = claim() {
                    ready[i] = Some(produce(i));
                    continue;
                }
                // The item wanted is with a helper, which sends it before it
                // exits (a panicking helper fails the scope in any case).
                match rx.recv() {
                    Ok((i, item)) => ready[i] = Some(item),
                    Err(mpsc::RecvError) => unreachable!("a claimed item was never sent"),
                }
            }
            Ok(())
        };
        let result = run();
        stop.store(true, Ordering::Release);
        result
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consumes_in_order_whoever_produces() {
        for threads in [1, 2, 3, 8] {
            let mut seen = Vec::new();
            in_order::<_, ()>(
                50,
                threads,
                |i| {
                    // Uneven work, so helpers finish out of order.
                    std::thread::sleep(Duration::from_micros((i as u64 * 7919) % 500));
                    Ok(i * 10)
                },
                |item| {
                    seen.push(item);
                    Ok(())
                },
            )
            .unwrap();
            assert_eq!(seen, (0..50).map(|i| i * 10).collect::<Vec<_>>());
        }
    }

    #[test]
    fn stops_at_the_first_error() {
        for threads in [1, 2, 4] {
            let mut seen = Vec::new();
            let result = in_order(
                100,
                threads,
                |i| if i == 30 { Err(i) } else { Ok(i) },
                |item| {
                    seen.push(item);
                    Ok(())
                },
            );
            assert_eq!(result, Err(30));
            assert_eq!(seen, (0..30).collect::<Vec<_>>());
        }
        let result = in_order(10, 2, Ok, |item| if item == 4 { Err(item) } else { Ok(()) });
        assert_eq!(result, Err(4));
    }
}
