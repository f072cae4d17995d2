use super::*;
use crate::store::tests::store_with;

#[test]
fn sort_parsing() {
    let keys = parse_sort("-created, device").unwrap();
    assert_eq!(keys.len(), 2);
    assert!(keys[0].descending);
    assert_eq!(keys[1].field, "device");
    assert_eq!(parse_sort("").unwrap()[0].field, "created");
    assert!(parse_sort("a;drop").is_err());
}

#[test]
fn cursors_round_trip_and_are_tied_to_their_sort() {
    let sort = parse_sort("-temp").unwrap();
    let cursor = Cursor {
        values: vec![json!(21.5)],
        id: "abc".into(),
    };
    let text = cursor.encode(&sort);
    assert_eq!(Cursor::decode(&text, &sort).unwrap(), cursor);
    assert!(Cursor::decode(&text, &parse_sort("temp").unwrap()).is_err());
    assert!(Cursor::decode("!!!", &sort).is_err());
}

#[test]
fn value_order_matches_the_index_encoding() {
    let ordered = [
        json!(null),
        json!(false),
        json!(true),
        json!(-1),
        json!(2.5),
        json!("a"),
        json!("b"),
        json!([1]),
    ];
    for pair in ordered.windows(2) {
        assert_eq!(compare_values(&pair[0], &pair[1]), Ordering::Less);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        keys::encode_value(&pair[0], &mut a);
        keys::encode_value(&pair[1], &mut b);
        assert!(a < b);
    }
}

/// Lists as an admin; also answers [`Store::count`] for the same request.
fn list_and_count(store: &Store, filter: &str, sort: &str, limit: usize) -> (Page, u64) {
    let collection = store.catalog().get("c").unwrap();
    let filter = (!filter.is_empty()).then(|| Expr::parse(filter).unwrap());
    let sort = parse_sort(sort).unwrap();
    let viewer = Viewer {
        admin: true,
        user: None,
    };
    let request = ListRequest {
        collection: &collection,
        viewer: &viewer,
        now: "2030-01-01T00:00:00.000Z",
        filter: filter.as_ref(),
        sort: &sort,
        after: None,
        limit,
    };
    (
        store.list(&request).unwrap(),
        store.count(&request).unwrap(),
    )
}

fn list(store: &Store, filter: &str, sort: &str, limit: usize) -> Page {
    list_and_count(store, filter, sort, limit).0
}

#[tokio::test]
async fn indexes_answer_filters_without_a_full_scan() {
    let records =
        (0..1000).map(|i| json!({"device": format!("d{}", i % 10), "temp": i, "other": i}));
    let (_dir, store, writer) =
        store_with(json!({"name": "c", "indexes": ["device", "temp"]}), records).await;

    let page = list(&store, "device = 'd3'", "", 1000);
    assert_eq!((page.items.len(), page.scanned), (100, 100));
    let page = list(&store, "temp >= 990 && device != 'x'", "-temp", 1000);
    assert_eq!((page.items.len(), page.scanned), (10, 10));
    assert_eq!(page.items[0]["temp"], json!(999));
    let page = list(&store, "temp > 100 && temp < 106", "", 1000);
    assert_eq!((page.items.len(), page.scanned), (5, 5));
    let page = list(&store, "temp > 5 && temp < 3", "", 1000);
    assert_eq!((page.items.len(), page.scanned), (0, 0));
    // Not indexed: every record is visited.
    let page = list(&store, "other = 3", "", 1000);
    assert_eq!((page.items.len(), page.scanned), (1, 1000));
    // Under || no single index range holds every match.
    let page = list(&store, "device = 'd3' || temp = 5", "", 1000);
    assert_eq!((page.items.len(), page.scanned), (101, 1000));
    // An in-order scan stops after limit + 1 matches.
    let page = list(&store, "", "-created", 10);
    assert_eq!((page.items.len(), page.scanned), (10, 11));
    assert!(page.next_cursor.is_some());
    let page = list(&store, "", "temp", 10);
    assert_eq!(page.scanned, 11);
    assert_eq!(page.items[9]["temp"], json!(9));
    writer.shutdown().await;
}

#[tokio::test]
async fn counts_every_match_whatever_the_page() {
    let records = (0..300).map(|i| json!({"device": format!("d{}", i % 10), "temp": i}));
    let (_dir, store, writer) =
        store_with(json!({"name": "c", "indexes": ["device"]}), records).await;
    // Through the index, through a full scan, and the stored count.
    assert_eq!(list_and_count(&store, "device = 'd3'", "", 5).1, 30);
    assert_eq!(list_and_count(&store, "temp >= 250", "-temp", 10).1, 50);
    assert_eq!(list_and_count(&store, "", "", 1).1, 300);
    assert_eq!(list_and_count(&store, "temp > 5 && temp < 3", "", 1).1, 0);
    writer.shutdown().await;
}
