use super::*;
use crate::services::testing::{admin, state_with_blocks, stop};

/// A page read from summaries taken before a block moved (the writer
/// merged it into a block under a lower seq) knows it, and the page is
/// read again whole rather than coming back short, which a client
/// would take for the last page.
#[tokio::test]
async fn a_page_read_while_a_block_moved_is_read_again() {
    let (_dir, state) = state_with_blocks(3).await;
    let collection = series_collection(&state, "readings").expect("the collection");
    let all = (i64::MIN, i64::MAX);
    let before = state
        .store
        .series_spans_between(collection.id, all.0, all.1)
        .expect("summaries");
    let last = before.iter().map(|b| b.first_seq).max().expect("a block");
    let moved = state
        .store
        .data()
        .remove(crate::store::keys::block(collection.id, last))
        .expect("removed");
    assert!(
        moved.is_some(),
        "the newest block is gone, as if merged away"
    );
    let principal = admin();
    let caller = Caller::new(&principal);
    let reader = Reader {
        collection: &collection,
        viewer: &caller.viewer,
        now: &caller.now,
        filter: None,
    };
    for descending in [false, true] {
        let read = scan_blocks(
            &state.store,
            &reader,
            before.clone(),
            all,
            None,
            descending,
            2,
        );
        assert!(
            matches!(read, Ok(Scanned::Moved(_))),
            "descending {descending}: the page says it moved"
        );
    }
    // Here the summary outlives its block, so every read finds it
    // gone: the page still comes, after a bounded number of reads.
    let (page, _) = scan_page(&state.store, &reader, all, None, false, 2).expect("a page");
    assert_eq!(page.len(), 2);
    stop(state).await;
}
